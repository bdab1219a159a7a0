"""Accuracy and cost of the pseudo-spectral Navier-Stokes reference (ddpinn.references).

(a) the 2D Taylor-Green flow (exact solution) on 32^3: max velocity error and energy error;
(b) the 3D Taylor-Green vortex at Re = 1600 on N^3 against the published 512^3 DNS
    (tgv3d_re1600_spectral512.gdiag): max relative difference of E(t) and of -dE/dt for
    t <= 2 and t <= T;
(c) wall time of each solve (numpy FFTs, one core).

Writes BENCHMARKS.md, section "Spectral reference", and bench/figures/spectral_reference.png.

    python bench/spectral_reference.py            # 64^3, t <= 10
    python bench/spectral_reference.py --n 128 --t-end 10
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import update_section  # noqa: E402

from ddpinn.references import solve, taylor_green_reference  # noqa: E402
from ddpinn.references.gdiag import read_gdiag  # noqa: E402
from ddpinn.references.spectral import grid_1d  # noqa: E402


def exact_2d(n: int, nu: float, t_end: float) -> dict:
    x = grid_1d(n)
    X, Y, _ = np.meshgrid(x, x, x, indexing="ij")
    u0 = np.stack([np.sin(X) * np.cos(Y), -np.cos(X) * np.sin(Y), 0 * X])
    times = np.linspace(0, t_end, 11)
    t0 = time.perf_counter()
    snaps = solve(u0, nu, times)
    wall = time.perf_counter() - t0
    err_u = max(np.abs(s.velocity - u0 * math.exp(-2 * nu * s.time)).max() for s in snaps)
    err_e = max(abs(s.energy - 0.25 * math.exp(-4 * nu * s.time)) / (0.25 * math.exp(
        -4 * nu * s.time)) for s in snaps)
    return {"n": n, "nu": nu, "t_end": t_end, "err_u": err_u, "err_e": err_e, "wall": wall}


def tgv_1600(n: int, t_end: float, dt_out: float):
    g = read_gdiag()
    times = np.round(np.arange(0, t_end + dt_out / 2, dt_out), 10)
    t0 = time.perf_counter()
    ref = taylor_green_reference(n, 1 / 1600, times, store_velocity=False)
    wall = time.perf_counter() - t0
    # The DNS rows at the same times (its file steps by 0.01).
    idx = np.array([int(np.argmin(np.abs(g.time - t))) for t in times])
    assert np.allclose(g.time[idx], times, atol=1e-9)
    rows = []
    for horizon in sorted({2.0, t_end}):
        k = times <= horizon + 1e-9
        e = np.abs(ref.energy[k] - g.energy[idx][k]) / g.energy[idx][k]
        dis = np.abs(ref.dissipation[k] - g.dissipation[idx][k]).max() / g.dissipation[idx][k].max()
        rows.append({"horizon": horizon, "energy": float(e.max()), "dissipation": float(dis)})
    peak = int(np.argmax(ref.dissipation))
    return ref, g, rows, wall, (float(ref.times[peak]), float(ref.dissipation[peak]))


def figure(ref, g, n, path: Path) -> None:
    from ddpinn.io.plots import new_figure, save_figure

    fig = new_figure(10, 4)
    keep = g.time <= ref.times.max() + 1e-9
    for i, (name, label) in enumerate((("energy", "E"), ("dissipation", "-dE/dt"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(g.time[keep], getattr(g, name)[keep], "k-", label="512^3 DNS (gdiag)")
        ax.plot(ref.times, getattr(ref, name), "o", ms=3, label=f"ddpinn spectral {n}^3")
        if name == "dissipation":
            ax.plot(ref.times, 2 * ref.nu * ref.enstrophy, "x", ms=4,
                    label=f"ddpinn {n}^3: 2 nu enstrophy")
        ax.set_xlabel("t")
        ax.set_ylabel(label)
        ax.legend(fontsize="small")
    fig.suptitle("Taylor-Green vortex, Re = 1600")
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--t-end", type=float, default=10.0)
    ap.add_argument("--dt-out", type=float, default=0.1)
    args = ap.parse_args()
    a = exact_2d(32, 0.01, 2.0)
    print(f"(a) 2D Taylor-Green on {a['n']}^3, nu {a['nu']}, t <= {a['t_end']}: max |u - exact| "
          f"{a['err_u']:.2e}, max rel. energy error {a['err_e']:.2e}, {a['wall']:.2f} s")
    ref, g, rows, wall, (t_peak, eps_peak) = tgv_1600(args.n, args.t_end, args.dt_out)
    for r in rows:
        print(f"(b) 3D TGV Re 1600 on {args.n}^3 vs 512^3 DNS, t <= {r['horizon']:g}: max rel. "
              f"diff E {r['energy']:.2e}, -dE/dt {r['dissipation']:.2e}")
    print(f"    peak -dE/dt {eps_peak:.5f} at t = {t_peak:.2f} (DNS: "
          f"{g.dissipation.max():.5f} at t = {g.time[np.argmax(g.dissipation)]:.2f})")
    print(f"(c) wall time: 3D solve to t = {args.t_end:g} on {args.n}^3 {wall:.1f} s")
    png = ROOT / "bench" / "figures" / "spectral_reference.png"
    figure(ref, g, args.n, png)
    cmd = f"python bench/spectral_reference.py --n {args.n} --t-end {args.t_end:g} " \
          f"--dt-out {args.dt_out:g}"
    lines = [f"Command: `{cmd}` (numpy FFTs, one core of a 2-core machine shared with other "
             f"jobs, so times are upper bounds). Figure: `bench/figures/spectral_reference.png`.",
             "", "| check | grid | result | wall time |", "| --- | --- | --- | --- |",
             f"| 2D Taylor-Green vs exact, nu = {a['nu']}, t <= {a['t_end']:g} | {a['n']}^3 | "
             f"max velocity error {a['err_u']:.1e}, energy {a['err_e']:.1e} (relative) | "
             f"{a['wall']:.2f} s |"]
    for r in rows:
        lines.append(f"| 3D Taylor-Green Re 1600 vs 512^3 DNS, t <= {r['horizon']:g} | "
                     f"{args.n}^3 | max relative difference: E {r['energy']:.1e}, -dE/dt "
                     f"{r['dissipation']:.1e} (of its max) | {wall:.0f} s (to t = "
                     f"{args.t_end:g}) |")
    lines += ["", f"Peak dissipation on {args.n}^3: {eps_peak:.5f} at t = {t_peak:.2f}; "
              f"512^3 DNS: {g.dissipation.max():.5f} at t = "
              f"{g.time[np.argmax(g.dissipation)]:.2f}. -dE/dt of the spectral solution equals "
              f"2 nu enstrophy to round-off (dealiased Galerkin conserves energy in the "
              f"nonlinear term), so the gap to the DNS is resolution only."]
    update_section(ROOT / "BENCHMARKS.md", "Spectral reference", "\n".join(lines))


if __name__ == "__main__":
    main()

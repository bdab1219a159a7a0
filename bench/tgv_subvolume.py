"""Turbulence from data: the Taylor-Green vortex at Re = 1600 reconstructed in a subvolume
(``cases/tgv3d_re1600_subvolume.toml``) from its boundary and initial data.

1. The data: ``ddpinn reference tgv-subvolume`` (unless ``--data`` holds the files already);
   its whole-box dissipation curve -dE/dt against the 512^3 DNS (``tgv3d_re1600_spectral512
   .gdiag`` of the data directory).
2. Training runs (``--variants``): ``boundary`` (faces and initial field only) and ``samples``
   (plus 1 % of the data grid's nodes inside as observations), on ``--ranks`` ranks.
3. Per run: relative L2 errors of u, v, w, velocity and p (mean removed per time) against the
   reference file, the vorticity magnitude and the subvolume's mean dissipation rate
   2 nu <S_ij S_ij> at each time against the spectral solution's, and the training time.

Writes the section "Turbulence from data" of BENCHMARKS.md ("... on a GPU" with
``--device cuda``; the case's name in the title for another ``--case``). A case of a smaller
cube inside the data's (``cases/tgv3d_re1600_subvolume_core.toml``) is scored at the reference
nodes inside it: make the reference finer with ``--reference-points``. The report also gives the
error of the initial field held fixed over the window, how far the flow moves in the cube.

    python bench/tgv_subvolume.py --data runs/tgvsub --ranks 4
    python bench/tgv_subvolume.py --data runs/tgvsub --runs-only   # report finished runs
    python bench/tgv_subvolume.py --data runs/tgvsub --reference-points 33 \
        --case cases/tgv3d_re1600_subvolume_core.toml
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import check_device, machine_note  # noqa: E402
from report import update_section  # noqa: E402

CASE = ROOT / "cases" / "tgv3d_re1600_subvolume.toml"
DATA, REFERENCE = "tgv1600_sub.nc", "tgv1600_sub_ref.nc"
VARIANTS = {"boundary": [], "samples": ["data.2.fraction=0.01"]}


def make_data(folder: Path, n: int, device: str, reference_points: int) -> str:
    cmd = [sys.executable, "-m", "ddpinn.cli", "reference", "tgv-subvolume", "--n", str(n),
           "--t-end", "10", "--device", device, "--out", str(folder / DATA),
           "--reference-out", str(folder / REFERENCE),
           "--reference-points", str(reference_points)]
    if not (folder / DATA).exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd, check=True)
    return " ".join(["ddpinn"] + cmd[3:])


def dissipation_check(folder: Path) -> tuple:
    """(table lines, max deviation / DNS peak) of the whole-box -dE/dt against the DNS."""
    from ddpinn.references.gdiag import read_gdiag

    with netCDF4.Dataset(folder / DATA) as ds:
        t = np.asarray(ds["t_diag"][:])
        eps = np.asarray(ds["dissipation"][:])
        n = int(ds.getncattr("n"))
    dns = read_gdiag()
    keep = t <= dns.time[-1]
    ref = np.interp(t[keep], dns.time, dns.dissipation)
    dev = np.abs(eps[keep] - ref)
    peak = float(dns.dissipation.max())
    i, j = int(np.argmax(eps)), int(np.argmax(dns.dissipation))
    lines = [
        "| quantity | spectral | 512^3 DNS | difference |", "| --- | --- | --- | --- |",
        f"| peak -dE/dt | {eps[i]:.5f} (t = {t[i]:.2f}) | {peak:.5f} (t = "
        f"{dns.time[j]:.2f}) | {abs(eps[i] - peak) / peak:.2%} |",
        f"| max over t in [0, {t[keep][-1]:.1f}] of the -dE/dt difference, relative to the "
        f"DNS peak | | | {dev.max() / peak:.2%} (t = {t[keep][np.argmax(dev)]:.2f}) |"]
    return lines, float(dev.max() / peak), n


def train(case: Path, variant: str, folder: Path, ranks: int, extra: list) -> Path:
    out = folder / f"run_{case.stem}_{variant}"
    sets = [f'data.0.file="{folder / DATA}"', f'data.1.file="{folder / REFERENCE}"',
            f'data.2.file="{folder / DATA}"', f'output.dir="{out}"', "output.plots=false",
            *VARIANTS[variant], *extra]
    # One rank runs as a plain process: a single GPU node need not have an MPI launcher.
    launcher = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
    cmd = [*launcher, sys.executable, "-m", "ddpinn.cli", "run", str(case), "--overwrite"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True)
    return out


def reference_inside(ref, sol, name: str) -> np.ndarray:
    """Variable ``name`` of the reference file (t, x, y, z) on the run's grid (x, y, z, t):
    the run is scored at the reference's nodes inside its domain, which may be smaller."""
    keep = []
    for axis in "txyz":
        c, want = np.asarray(ref[axis][:]), np.asarray(sol[axis][:])
        index = np.searchsorted(c, want - 1e-9)
        assert np.allclose(c[index], want, atol=1e-9), f"axis {axis}: grids differ"
        keep.append(index)
    return np.moveaxis(np.asarray(ref[name][:])[np.ix_(*keep)], 0, -1)


def frozen_error(run: Path, folder: Path) -> float:
    """Velocity relative L2 error of the initial field held fixed over the window: how far
    the flow moves inside the run's domain, the yardstick of the errors."""
    with netCDF4.Dataset(folder / REFERENCE) as ref, netCDF4.Dataset(run / "solution.nc") as sol:
        vel = np.stack([reference_inside(ref, sol, c) for c in "uvw"])  # (3, x, y, z, t)
    return float(np.linalg.norm(vel - vel[..., :1]) / np.linalg.norm(vel))


def flow_comparison(run: Path, folder: Path) -> dict:
    """|omega| relative L2 and the subvolume's mean dissipation per time, networks vs data."""
    with netCDF4.Dataset(folder / REFERENCE) as ref, netCDF4.Dataset(run / "solution.nc") as sol:
        w_ref = reference_inside(ref, sol, "vorticity_magnitude")
        e_ref = reference_inside(ref, sol, "dissipation_rate")
        w_net = np.asarray(sol["vorticity_magnitude"][:])
        e_net = np.asarray(sol["dissipation_rate"][:])
        times = np.asarray(sol["t"][:])
    mean_ref, mean_net = e_ref.mean((0, 1, 2)), e_net.mean((0, 1, 2))
    return {"vorticity_l2": float(np.linalg.norm(w_net - w_ref) / np.linalg.norm(w_ref)),
            "dissipation_max_rel": float(np.max(np.abs(mean_net - mean_ref) / mean_ref)),
            "dissipation_ref": (float(mean_ref.min()), float(mean_ref.max())),
            "times": (float(times[0]), float(times[-1]))}


def run_layout(run: Path) -> str:
    """The expert grid and network of a finished run, e.g. ``4x4x4x1 experts of width 64,
    depth 4``, from its ``run.json``."""
    fields = json.loads((run / "run.json").read_text())["fields"]
    grid = "x".join(str(g) for g in fields["decomposition.grid"])
    return (f"{grid} experts of width {fields['network.width']}, depth "
            f"{fields['network.depth']}")


def run_row(variant: str, run: Path, folder: Path) -> str:
    errors = json.loads((run / "errors.json").read_text())
    rows = [json.loads(line) for line in open(run / "metrics.jsonl") if line.strip()]
    seconds = sum(r.get("time_step", 0.0) for r in rows)
    flow = flow_comparison(run, folder)
    return (f"| {variant} | {errors['l2_velocity']:.3e} | {errors['l2_u']:.2e}, "
            f"{errors['l2_v']:.2e}, {errors['l2_w']:.2e} | {errors['l2_p']:.3e} | "
            f"{flow['vorticity_l2']:.3e} | {flow['dissipation_max_rel']:.2%} | "
            f"{rows[-1]['step'] + 1} | {seconds / 60:.1f} min |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", type=Path, default=CASE,
                   help="a deck reading tgv1600_sub.nc and tgv1600_sub_ref.nc (a cube inside "
                        "the data's)")
    p.add_argument("--data", type=Path, default=ROOT / "runs" / "tgvsub")
    p.add_argument("--n", type=int, default=128, help="spectral grid of the data")
    p.add_argument("--reference-points", type=int, default=17,
                   help="grid points per side of the reference file (a smaller cube is scored "
                        "at the nodes inside it)")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the spectral solver and the training run (cuda: every rank "
                        "on the node's GPUs, parallel.device = 'cuda')")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--runs-only", action="store_true", help="report finished runs only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more overrides for every training run")
    args = p.parse_args(argv)
    check_device(args.device)
    if args.device == "cuda":
        args.set = ['parallel.device="cuda"', *args.set]
    data_cmd = make_data(args.data, args.n, args.device, args.reference_points)
    lines, worst, n = dissipation_check(args.data)
    rows, layouts, last = [], set(), None
    for variant in args.variants:
        run = args.data / f"run_{args.case.stem}_{variant}"
        if not args.runs_only:
            run = train(args.case, variant, args.data, args.ranks, args.set)
        if (run / "errors.json").exists():
            rows.append(run_row(variant, run, args.data))
            layouts.add(run_layout(run))
            last = run
    # the same grid and reference for every variant: one yardstick
    frozen = frozen_error(last, args.data) if last is not None else None
    extra = " ".join(f"--set {s}" for s in args.set)
    text = "\n".join([
        f"Data: `{data_cmd}` (spectral {n}^3, 2/3 dealiasing, RK4; the cube [pi/8, 5 pi/8]^3 "
        f"at 21 times in [8.75, 9.25], 65^3 points per time for the boundary data, "
        f"{args.reference_points}^3 for the reference). Its whole-box dissipation against the "
        f"512^3 DNS:", "", *lines, "",
        f"Training: `python bench/tgv_subvolume.py --data DIR --n {args.n} --ranks {args.ranks} "
        f"--device {args.device} {extra}`, "
        f"case `cases/{args.case.name}` ({'; '.join(sorted(layouts))}, {args.ranks} ranks; "
        f"{machine_note(args.device)}); errors against the reference file at its nodes inside "
        f"the case's cube at its 21 times, pressure with its mean removed at every time. "
        f"|omega| and the dissipation rate come from the networks' derivatives; the "
        f"dissipation column is the largest relative difference of the cube's mean "
        f"2 nu <S_ij S_ij> over the 21 times. The initial field held fixed over the window is "
        + (f"{frozen:.3e} off in velocity (how far the flow moves)." if frozen is not None
           else "not measured (no finished run)."), "",
        "| data | velocity | u, v, w | p | vorticity magnitude | mean dissipation | steps | "
        "training time |", "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows])
    title = "Turbulence from data{} (Taylor-Green Re = 1600 subvolume{})".format(
        " on a GPU" if args.device == "cuda" else "",
        "" if args.case.resolve() == CASE else f", {args.case.stem}")
    update_section(ROOT / "BENCHMARKS.md", title, text)
    print(text)
    print(f"whole-box dissipation within {worst:.2%} of the DNS peak")


if __name__ == "__main__":
    main()

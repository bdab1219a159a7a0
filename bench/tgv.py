"""Taylor-Green vortex: a trained case against the spectral reference, written to BENCHMARKS.md.

Trains ``cases/<case>.toml`` under mpiexec (or, with ``--collect``, reads a run made earlier
with the same command), then reports the velocity relative L2 error against the project's
pseudo-spectral reference and the kinetic energy E(t), dissipation -dE/dt and 2 nu enstrophy of
the networks against the reference's, from the run's ``diagnostics.nc``.

    python bench/tgv.py tgv3d_re100 --ranks 2 --out /tmp/tgv             # train, then report
    python bench/tgv.py tgv3d_re100 --ranks 2 --out /tmp/tgv --collect   # report a finished run
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import update_section  # noqa: E402

from ddpinn.io.config import load as load_config  # noqa: E402

TARGETS = {"velocity": 5e-2, "energy": 2e-2}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", default="tgv3d_re100")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="run directory root")
    ap.add_argument("--collect", action="store_true", help="report a run made earlier")
    ap.add_argument("--set", action="append", default=[], help="extra --set overrides")
    ap.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    run = args.out / args.case
    overrides = [f'output.dir="{run}"'] + args.set
    command = f"mpiexec -n {args.ranks} ddpinn run cases/{args.case}.toml " + " ".join(
        f"--set '{s}'" for s in overrides[1:])
    if not args.collect:
        shutil.rmtree(run, ignore_errors=True)
        cmd = ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", "ddpinn.cli", "run",
               f"cases/{args.case}.toml"] + [a for s in overrides for a in ("--set", s)]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True)
        print(f"trained in {time.perf_counter() - t0:.0f} s")
    errors = json.loads((run / "errors.json").read_text())
    with netCDF4.Dataset(run / "solution.nc") as ds:
        train_s = float(ds.training_seconds)
    with netCDF4.Dataset(run / "diagnostics.nc") as ds:
        t = np.asarray(ds["t"][:])
        series = {k: np.asarray(ds[k][:]) for k in ds.variables if k != "t"}
        n_grid = int(ds.points_per_axis)
    e, e_ref = series["energy"], series["reference_energy"]
    rel_e = np.abs(e - e_ref) / np.abs(e_ref)
    d, d_ref = series["dissipation"], series["reference_dissipation"]
    rel_d = np.abs(d - d_ref) / np.max(np.abs(d_ref))
    vel = errors["l2_velocity"]
    cfg = load_config(run / "config.toml")  # the run's own precision and threads
    threads = cfg.parallel.threads
    how = f"{cfg.case.dtype}, {threads} thread{'s' if threads != 1 else ''} per rank"
    fig_dir = ROOT / "bench" / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs = []
    for name in ("energy.png", "dissipation.png"):
        src = run / "plots" / name
        if src.is_file():
            dst = fig_dir / f"{args.case}_{name}"
            shutil.copyfile(src, dst)
            figs.append(dst)
    rows = ["| t | E (networks) | E (spectral) | rel. diff | -dE/dt (networks) | "
            "-dE/dt (spectral) | 2 nu enstrophy (networks) |", "|---|---|---|---|---|---|---|"]
    for i in range(len(t)):
        rows.append(f"| {t[i]:.2f} | {e[i]:.5f} | {e_ref[i]:.5f} | {rel_e[i]:.2e} | {d[i]:.2e} | "
                    f"{d_ref[i]:.2e} | {series['two_nu_enstrophy'][i]:.2e} |")
    met_v = "yes" if vel <= TARGETS["velocity"] else "no"
    met_e = "yes" if rel_e.max() <= TARGETS["energy"] else "no"
    body = f"""
Command: `{command}` ({how}, a 2-core CPU machine shared with other jobs,
so the training time is an upper bound); the table by
`python bench/tgv.py {args.case} --ranks {args.ranks} --out OUT --collect`.

| quantity | value | target | met |
| --- | --- | --- | --- |
| velocity relative L2 error vs the spectral reference | {vel:.3e} | <= {TARGETS['velocity']:g} | {met_v} |
| max relative difference of E(t) over the window | {rel_e.max():.2e} | <= {TARGETS['energy']:g} | {met_e} |
| max difference of -dE/dt (relative to its max) | {rel_d.max():.2e} | | |
| training time | {train_s:.0f} s | | |

All errors: {', '.join(f"{k[3:]} {v:.2e}" for k, v in errors.items())}. The pressure is
determined up to a function of time and compared after removing its mean at each time. Diagnostics by quadrature
(mean over a periodic {n_grid}^3 grid) at each output time; -dE/dt of the networks from their
time derivative.

{chr(10).join(rows)}

{chr(10).join(f"![{p.stem}](bench/figures/{p.name})" for p in figs)}
"""
    update_section(args.benchmarks, f"Taylor-Green vortex: {args.case}", body)
    print(f"velocity {vel:.3e}; E max rel diff {rel_e.max():.2e}; wrote {args.benchmarks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

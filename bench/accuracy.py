"""Accuracy of the shipped cases against exact or reference solutions.

Runs each case with ``mpiexec`` on the given rank count, reads ``errors.json`` and the
training time from the run directory, and writes a table to BENCHMARKS.md (section
"Accuracy"), with the command that produced each row.

    python bench/accuracy.py                   # all cases below
    python bench/accuracy.py kovasznay poisson2d
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import update_section  # noqa: E402

# case stem -> (ranks, metric, target)
CASES = {
    "poisson2d": (4, "l2_u", 1e-3),
    "kovasznay": (4, "l2_u", 1e-3),
    "burgers1d": (3, "l2_u", 1.45e-2),
    "beltrami3d": (4, "l2_velocity", 1e-2),
}


def run(stem: str, out_root: Path, collect: bool = False) -> dict:
    """Train the case (or, with ``collect``, read a run made earlier with the same command)."""
    ranks, metric, target = CASES[stem]
    out = out_root / stem
    wall = float("nan")
    if not collect:
        shutil.rmtree(out, ignore_errors=True)
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), sys.executable, "-m",
               "ddpinn.cli", "run", f"cases/{stem}.toml", "--set", f'output.dir="{out}"']
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True)
        wall = time.perf_counter() - t0
    errors = json.loads((out / "errors.json").read_text())
    with netCDF4.Dataset(out / "solution.nc") as ds:
        train_s = float(ds.training_seconds)
        reference = ds.reference
    return {"case": stem, "ranks": ranks, "metric": metric, "error": errors[metric],
            "target": target, "train_s": train_s, "wall_s": wall, "reference": reference,
            "all": errors, "command": f"mpiexec -n {ranks} ddpinn run cases/{stem}.toml"}


def table(rows) -> str:
    lines = ["| case | ranks | error (relative L2) | target | met | training time | reference |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ref = Path(r["reference"]).name if r["reference"] not in ("exact", "none") else r["reference"]
        lines.append(f"| {r['case']} | {r['ranks']} | {r['metric'][3:]} {r['error']:.3e} | "
                     f"{r['target']:.2e} | {'yes' if r['error'] <= r['target'] else 'NO'} | "
                     f"{r['train_s']:.0f} s | {ref} |")
    lines.append("")
    lines.append("All errors of each run: " + "; ".join(
        f"{r['case']}: " + ", ".join(f"{k[3:]} {v:.2e}" for k, v in r["all"].items())
        for r in rows))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-accuracy"))
    ap.add_argument("--collect", action="store_true",
                    help="do not train: read OUT/CASE run directories made by the same commands")
    args = ap.parse_args()
    rows = [run(c, Path(args.out), args.collect) for c in args.cases]
    body = ("float32, 2-core CPU machine shared with other jobs, one thread per rank (the ranks\n"
            "oversubscribe the cores), so training times are upper bounds.\n"
            "Command per row: `mpiexec -n RANKS ddpinn run cases/CASE.toml --set "
            "output.dir=OUT/CASE`;\nthe table by "
            f"`python bench/accuracy.py {' '.join(args.cases)}"
            f"{' --collect --out OUT' if args.collect else ''}`.\n\n" + table(rows))
    update_section(ROOT / "BENCHMARKS.md", "Accuracy", body)
    print(table(rows))


if __name__ == "__main__":
    main()

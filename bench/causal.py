"""Causal weights and R3 sampling against plain training, on a fixed step budget.

Runs one case (default: advection with beta = 30, the propagation-failure example of both
papers) with each variant below for the same number of Adam steps, reads ``errors.json`` and
the training time, and writes a table to BENCHMARKS.md (section "Causal weights and R3
sampling: CASE, beta = B") with the command of each row.

    python bench/causal.py                          # all variants, 600 Adam steps
    python bench/causal.py plain causal --steps 1000
    python bench/causal.py --collect                # table from runs made earlier
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import netCDF4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import update_section  # noqa: E402

CAUSAL = ["causal.chunks=16", "causal.epsilon=[1.0, 10.0, 100.0]"]
R3 = ["points.resample=r3", "points.resample_every=100"]
VARIANTS = {"plain": [], "causal": CAUSAL, "r3": R3, "causal+r3": CAUSAL + R3}


def command(args, variant: str) -> list:
    sets = [f"pde.params.beta={args.beta}", f"stages.0.steps={args.steps}",
            "stages.1.steps=0", "output.plots=false", *args.set, *VARIANTS[variant]]
    cmd = ["mpiexec", "-n", str(args.ranks), "ddpinn", "run", args.case]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def run(args, variant: str) -> dict:
    out = Path(args.out) / variant.replace("+", "_")
    cmd = command(args, variant)
    if not args.collect:
        shutil.rmtree(out, ignore_errors=True)
        full = [shutil.which("mpiexec") or "mpiexec", *cmd[1:3], sys.executable, "-m",
                "ddpinn.cli", *cmd[4:], "--set", f'output.dir="{out}"']
        subprocess.run(full, cwd=ROOT, check=True)
    errors = json.loads((out / "errors.json").read_text())
    with netCDF4.Dataset(out / "solution.nc") as ds:
        train_s = float(ds.training_seconds)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
    last = rows[-1]
    return {"variant": variant, "errors": errors, "train_s": train_s, "loss": last["loss"],
            "residual": last["residual"], "min_w": last.get("causal_weight_min"),
            "eps": last.get("causal_epsilon"),
            "command": " ".join(shlex.quote(c) for c in cmd)}


def table(rows) -> str:
    lines = ["| variant | relative L2 error of u | final residual | min causal weight | "
             "training time |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        w = f"{r['min_w']:.3f} (eps {r['eps']:g})" if r["min_w"] is not None else "-"
        lines.append(f"| {r['variant']} | {r['errors']['l2_u']:.3e} | {r['residual']:.3e} | "
                     f"{w} | {r['train_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--case", default="cases/advection1d.toml")
    ap.add_argument("--beta", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="further case overrides, for every variant")
    ap.add_argument("--out", default="runs/bench_causal")
    ap.add_argument("--collect", action="store_true", help="read runs made earlier")
    ap.add_argument("--note", default="", help="a sentence on the figures, for the section")
    ap.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = [run(args, v) for v in args.variants]
    print(table(rows))
    body = (f"{args.case} with beta = {args.beta:g}, {args.steps} Adam steps (the case's "
            f"learning-rate schedule, no L-BFGS stage), {args.ranks} rank(s), on a 2-core CPU "
            f"machine shared with other jobs (times are upper bounds). Causal: "
            f"`{' '.join(CAUSAL)}`; R3: `{' '.join(R3)}`. Table by "
            f"`python bench/causal.py {' '.join(args.variants)} --steps {args.steps} "
            f"--ranks {args.ranks}"
            + "".join(f" --set {shlex.quote(s)}" for s in args.set)
            + "`; command per row:\n\n"
            + "\n".join(f"- {r['variant']}: `{r['command']}`" for r in rows)
            + "\n\n" + table(rows) + (f"\n\n{args.note}" if args.note else ""))
    title = f"Causal weights and R3 sampling: {Path(args.case).stem}, beta = {args.beta:g}"
    update_section(Path(args.benchmarks), title, body)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

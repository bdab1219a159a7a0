"""Strong scaling of one case over 1, 2 and 4 ranks, with the step time split.

Runs ``mpiexec -n R python -m ddpinn.cli run CASE`` for each rank count with one thread per
rank (``OMP_NUM_THREADS=1``, ``parallel.threads=1``) and a fixed number of Adam and L-BFGS
steps, then reads the per-step timings of ``metrics.jsonl``: ``time_step`` and its split
into compute (forward, derivatives, loss, backward), exchange wait (blocked completing the
interface exchange) and allreduce (shared gradients, metrics, L-BFGS inner products), each
the mean over ranks; the rest of an L-BFGS step is its vector algebra. The first
``--warmup`` steps of each stage are dropped and the median of the rest is reported. Rank
counts are run in interleaved rounds (1, 2, 4, 1, 2, 4, ...) so that background load
affects all alike; the median over rounds is reported.

Writes BENCHMARKS.md section "Scaling (DEVICE)" and ``bench/figures/scaling_DEVICE.png``
(for another case than the default: "Scaling: CASE (DEVICE)", ``scaling_CASE_DEVICE.png``).

    python bench/scaling.py                              # poisson2d on a 4x2 grid, 1/2/4 ranks
    python bench/scaling.py --adam 20 --lbfgs 5 --rounds 1 --no-write   # quick check
    python bench/scaling.py --case kovasznay --grid "[2, 2]"   # larger steps (1500 points each)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import netCDF4  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import (check_device, command_line, default_device, load_average,  # noqa: E402
                     machine_note, uptime)
from report import update_section  # noqa: E402

PARTS = ("time_compute", "time_exchange", "time_allreduce")
LABELS = {"time_compute": "compute", "time_exchange": "exchange wait",
          "time_allreduce": "allreduce", "other": "other (L-BFGS algebra)"}
STAGES = {0: "adam", 1: "lbfgs"}
DEFAULT_CASE = "poisson2d"


def run_case(case: str, ranks: int, out: Path, sets, device: str) -> dict:
    """Train the case on ``ranks`` ranks; returns {stage: {key: median seconds}} and the
    whole training time."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), sys.executable, "-m",
           "ddpinn.cli", "run", str(ROOT / "cases" / f"{case}.toml"), "--quiet",
           "--set", f'output.dir="{out}"'] + [a for s in sets for a in ("--set", s)] + \
          ["--set", f'parallel.device="{device}"']
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed with exit status {proc.returncode}:\n"
                 f"{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
    with netCDF4.Dataset(out / "solution.nc") as ds:
        train_s = float(ds.training_seconds)
    return {"rows": rows, "train_s": train_s, "steps": len(rows)}


def stage_medians(rows, stage: int, warmup: int) -> dict:
    """Median per-step seconds of one stage, after dropping its first ``warmup`` steps."""
    sel = [r for r in rows if r["stage"] == stage][warmup:]
    if not sel:
        return {}
    med = {k: statistics.median(r[k] for r in sel) for k in ("time_step",) + PARTS}
    med["other"] = max(0.0, med["time_step"] - sum(med[k] for k in PARTS))
    return med


def combine(rounds) -> dict:
    """Median over rounds of each figure."""
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def figure(results: dict, ranks, path: Path, title: str) -> None:
    stages = [s for s in STAGES if results[ranks[0]].get(s)]
    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.8), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        bottom = [0.0] * len(ranks)
        for key in PARTS + ("other",):
            vals = [results[r][stage][key] * 1e3 for r in ranks]
            ax.bar([str(r) for r in ranks], vals, bottom=bottom, label=LABELS[key])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xlabel("ranks (1 thread each)")
        ax.set_ylabel("ms per step (mean over ranks)")
        ax.set_title(f"{STAGES[stage]} step")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=DEFAULT_CASE, help="case stem in cases/")
    ap.add_argument("--grid", default="[4, 2]", help="decomposition.grid (TOML list)")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--adam", type=int, default=300, help="Adam steps")
    ap.add_argument("--lbfgs", type=int, default=40, help="L-BFGS steps")
    ap.add_argument("--warmup", type=int, default=10, help="steps dropped at each stage start")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default=default_device(), choices=("cpu", "cuda"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a case setting for every run (repeatable); the section and figure "
                         "are named after it")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    check_device(args.device)
    ranks = [int(r) for r in args.ranks.split(",")]
    sets = [f"decomposition.grid={args.grid}", f"stages.0.steps={args.adam}",
            f"stages.1.steps={args.lbfgs}", "parallel.threads=1", "output.plots=false",
            "output.eval_every=0", "output.checkpoint_every=0", "output.log_every=0",
            *args.set]
    started, t0 = uptime(), time.perf_counter()
    per_round = {r: [] for r in ranks}
    train = {r: [] for r in ranks}
    with tempfile.TemporaryDirectory(prefix="ddpinn-scaling-") as tmp:
        for k in range(args.rounds):
            for r in ranks:
                res = run_case(args.case, r, Path(tmp) / f"r{r}", sets, args.device)
                per_round[r].append({s: stage_medians(res["rows"], s, args.warmup)
                                     for s in STAGES})
                train[r].append(res["train_s"] / res["steps"])
                adam = per_round[r][-1][0]
                print(f"round {k}: {r} ranks: adam step {adam['time_step'] * 1e3:.2f} ms "
                      f"(compute {adam['time_compute'] * 1e3:.2f}, exchange "
                      f"{adam['time_exchange'] * 1e3:.2f}, allreduce "
                      f"{adam['time_allreduce'] * 1e3:.2f})", flush=True)
    results = {r: {s: combine([x[s] for x in per_round[r]]) if per_round[r][0][s] else {}
                   for s in STAGES} for r in ranks}
    base = ranks[0]
    extra = "".join(f", `{x}`" for x in args.set)
    lines = [f"Case `{args.case}` with `decomposition.grid={args.grid}`{extra}, {args.adam} Adam + "
             f"{args.lbfgs} L-BFGS steps, one thread per rank, device {args.device}. Per-step "
             f"times from `metrics.jsonl` (mean over ranks; median over steps after "
             f"{args.warmup} warm-up steps per stage, then median of {args.rounds} interleaved "
             "rounds). Speed-up is relative to "
             f"{base} rank{'s' if base > 1 else ''}; the exchange-wait and allreduce shares "
             "include load imbalance and, beyond the core count, time slicing.", "",
             "| stage | ranks | step | compute | exchange wait | allreduce | other | speed-up |"
             " exchange share |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for stage, name in STAGES.items():
        for r in ranks:
            m = results[r][stage]
            if not m:
                continue
            speed = results[base][stage]["time_step"] / m["time_step"]
            lines.append(f"| {name} | {r} | {m['time_step'] * 1e3:.2f} ms | "
                         f"{m['time_compute'] * 1e3:.2f} ms | {m['time_exchange'] * 1e3:.2f} ms |"
                         f" {m['time_allreduce'] * 1e3:.2f} ms | {m['other'] * 1e3:.2f} ms | "
                         f"{speed:.2f}x | {m['time_exchange'] / m['time_step']:.0%} |")
    tr = {r: statistics.median(train[r]) for r in ranks}
    lines += ["", "Whole training time per step (the run's `training_seconds` / steps: also "
              "Adam's update and writing `metrics.jsonl`): " + ", ".join(
                  f"{r} rank{'s' if r > 1 else ''} {tr[r] * 1e3:.2f} ms "
                  f"({tr[base] / tr[r]:.2f}x)" for r in ranks) + "."]
    # The default case keeps the plain names; other cases get their own section and figure.
    tag = "" if args.case == DEFAULT_CASE and not args.set else f"_{args.case}"
    tag += "".join("_" + x.split("=")[0].split(".")[-1] for x in args.set)
    png = ROOT / "bench" / "figures" / f"scaling{tag}_{args.device}.png"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    figure(results, ranks, png, f"{args.case}, grid {args.grid}, {args.device}, "
           f"{cores} cores")
    lines += ["", f"![step time split]({png.relative_to(ROOT)})", "",
              f"Command: `{command_line('bench/scaling.py', argv)}` "
              f"({time.perf_counter() - t0:.0f} s). Machine: {machine_note(args.device)}. "
              f"`uptime` at the start: `{started}`; load average at the end: {load_average()}."]
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        title = (f"Scaling ({args.device})" if not tag else
                 f"Scaling: {args.case}{''.join(', ' + x for x in args.set)} ({args.device})")
        update_section(ROOT / "BENCHMARKS.md", title, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

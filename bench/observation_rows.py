"""Cost of observation rows in a training step: one loss-and-gradient evaluation (the
closure) of a case without observations, with observations evaluated by value only (the
shipped path: a plain forward pass at their rows), and with observations pushed through the
derivative engine like every other row. The three are timed in turn (ABCABC...) in one
process, so a noisy machine slows them alike.

Writes the section "Observation rows" of BENCHMARKS.md.

    DDPINN_DATA=runs/tgvsub python bench/observation_rows.py \\
        --case cases/tgv3d_re1600_subvolume.toml --table 2 --fraction 0.01 --repeats 5
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import update_section  # noqa: E402

from ddpinn.io.config import load  # noqa: E402
from ddpinn.parallel import SerialComm  # noqa: E402
from ddpinn.problem import build_problem  # noqa: E402
from ddpinn.training.solver import Solver  # noqa: E402


def solver(case: str, table: int, fraction: float, sets: list) -> Solver:
    cfg = load(case, [f"data.{table}.fraction={fraction}", *sets])
    return Solver(build_problem(cfg), SerialComm())


def timed(closure) -> float:
    t0 = time.perf_counter()
    closure()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=str(ROOT / "cases" / "tgv3d_re1600_subvolume.toml"))
    ap.add_argument("--table", type=int, default=2, help="index of the observations table")
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--report", action="store_true", help="write BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    none = solver(args.case, args.table, 0.0, args.sets)
    obs = solver(args.case, args.table, args.fraction, args.sets)
    batch = obs.ctx.batch
    full_ctx = dataclasses.replace(obs.ctx, batch=dataclasses.replace(batch, value_rows=0))

    def full():
        saved, obs.closure.ctx = obs.closure.ctx, full_ctx
        try:
            obs.closure()
        finally:
            obs.closure.ctx = saved

    runs = {"no observations": none.closure, "observations, value only": obs.closure,
            "observations, all derivatives": full}
    for f in runs.values():  # warm-up (first-call allocations)
        f()
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, f in runs.items():
            times[k].append(timed(f))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows_total, k_obs = batch.x.shape[1], batch.value_rows
    lines = [f"`{Path(args.case).name}`, {obs.model.n_experts} experts in one process, "
             f"{rows_total} rows per expert of which {k_obs} observation rows "
             f"(fraction {args.fraction}); one closure (loss and gradients), median of "
             f"{args.repeats}, the three timed in turn, one torch thread.", "",
             "| closure | median time | ratio to no observations |", "| --- | --- | --- |"]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.3f} s | {v / med['no observations']:.2f} |")
    cmd = " ".join(["python bench/observation_rows.py", f"--case {args.case}",
                    f"--table {args.table}", f"--fraction {args.fraction}",
                    f"--repeats {args.repeats}", *[f"--set {s}" for s in args.sets]])
    lines += ["", f"Command: `{cmd}`"]
    body = "\n".join(lines)
    print(body)
    if args.report:
        update_section(ROOT / "BENCHMARKS.md", "Observation rows", body)


if __name__ == "__main__":
    main()

"""Boundary, initial and data rows by a plain forward pass against the PDE's derivatives.

A ``[[boundary]]`` deck whose conditions read no derivative puts its boundary, initial and
data rows in a trailing value-only block (``PointBatch.value_rows``). This times one loss
evaluation and backward pass of all experts of such a deck on one process, one torch thread:
A with the value-only block, B the same batch with every row through the derivative engine
(``value_rows = 0``, the cost without the block). A and B alternate (A, B, A, B, ...) and the
medians are reported. Writes section "Value-only boundary rows" of BENCHMARKS.md.

    python bench/value_rows.py --case cases/tgv3d_re1600_subvolume_core.toml --data DIR \\
        --set points.boundary=2000 --set data.2.fraction=0.01
    python bench/value_rows.py --case cases/kovasznay_csv_boundary.toml --no-write
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from machine import command_line, load_average  # noqa: E402
from report import update_section  # noqa: E402

from ddpinn.io.config import load  # noqa: E402
from ddpinn.parallel import SerialComm  # noqa: E402
from ddpinn.problem import build_problem  # noqa: E402
from ddpinn.training.loss import local_loss  # noqa: E402
from ddpinn.training.solver import Solver  # noqa: E402

TITLE = "Value-only boundary rows"


def contexts(solver):
    """(the solver's context, with the value-only block; the same batch with every row
    through the derivative engine)."""
    ctx = solver.ctx
    return ctx, dataclasses.replace(ctx, batch=dataclasses.replace(ctx.batch, value_rows=0))


def one_step(ctx, model, params) -> tuple:
    """Seconds of one loss and backward pass, and the loss."""
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    terms = local_loss(ctx, model, params)
    terms.total.backward()
    return time.perf_counter() - t0, float(terms.total.detach())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", required=True)
    ap.add_argument("--data", default=None, help="folder holding the deck's data files "
                    "(the working directory while the problem is built)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    case = Path(args.case).resolve()
    here = Path.cwd()
    if args.data:
        os.chdir(args.data)
    try:
        solver = Solver(build_problem(load(case, args.set)), SerialComm())
    finally:
        os.chdir(here)
    fast, slow = contexts(solver)
    batch = solver.batch
    E, N = batch.x.shape[:2]
    if not batch.value_rows:
        sys.exit(f"{case.name}: no value-only rows (a condition reads a derivative)")
    # the unknowns as the training closure passes them (per-expert leaves)
    params = {**solver.pde.params, **solver.experts.shared_values(leaves=True)}
    loss = {}
    times = {"values": [], "derivatives": []}
    one_step(fast, solver.model, params)  # warm-up of both paths
    one_step(slow, solver.model, params)
    for _ in range(args.reps):
        for name, ctx in (("values", fast), ("derivatives", slow)):
            t, loss[name] = one_step(ctx, solver.model, params)
            times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    rel = abs(loss["values"] - loss["derivatives"]) / abs(loss["derivatives"])
    body = (
        f"`{command_line('bench/value_rows.py', argv)}`\n\n"
        f"{case.name}, {E} experts on one process, one torch thread, {N} rows per expert of "
        f"which {batch.value_rows} value-only (boundary, initial, data and observation rows); "
        f"{args.reps} interleaved repetitions, medians; load average {load_average()}.\n\n"
        "| rows | loss + backward | ratio |\n| --- | --- | --- |\n"
        f"| value-only block by a forward pass | {med['values']:.3f} s | 1.00 |\n"
        f"| every row with derivatives | {med['derivatives']:.3f} s | "
        f"{med['derivatives'] / med['values']:.2f} |\n\n"
        f"The two losses agree to {rel:.1e} (relative).")
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", TITLE, body)


if __name__ == "__main__":
    main()

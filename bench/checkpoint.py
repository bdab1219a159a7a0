"""Checkpoint cost on a 64-subdomain case: time to write and to restore, and the overhead of
checkpointing every k steps. Run under MPI:

    mpiexec -n 4 python bench/checkpoint.py [--width 64] [--steps 60]

Rank 0 prints a table and writes it into BENCHMARKS.md (section "Checkpoints").
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import update_section  # noqa: E402

from ddpinn.io import checkpoint  # noqa: E402
from ddpinn.io.config import load  # noqa: E402
from ddpinn.parallel import world  # noqa: E402
from ddpinn.parallel.errors import install_abort_hook  # noqa: E402
from ddpinn.problem import build_problem  # noqa: E402
from ddpinn.training.solver import Solver  # noqa: E402
from ddpinn.training.trainer import Trainer  # noqa: E402


def build(comm, out, args, every):
    cfg = load(ROOT / "cases" / "heat1d.toml", [
        "decomposition.grid=[8, 8]", f"network.width={args.width}", "network.depth=4",
        "points.interior=128", "points.boundary=16", "points.interface=16",
        "case.dtype=\"float64\"", f"stages.0.steps={args.steps}", "stages.1.steps=0",
        f'output.dir="{out}"', "output.log_every=0", "output.eval_every=0",
        f"output.checkpoint_every={every}", "output.keep_checkpoints=2"])
    solver = Solver(build_problem(cfg), comm)
    if comm.rank == 0:
        Path(cfg.output.dir).mkdir(parents=True, exist_ok=True)
    comm.barrier()
    return Trainer(solver, Path(cfg.output.dir))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    comm = world()
    install_abort_hook(comm)
    tmp = Path(comm.bcast(tempfile.mkdtemp(prefix="ddpinn-ckpt-") if comm.rank == 0 else None))

    trainer = build(comm, tmp / "io", args, 0)
    trainer.train()  # Adam state exists, as in a real run
    saves, loads = [], []
    for _ in range(args.repeat):
        comm.barrier()
        t0 = time.perf_counter()
        trainer.save_checkpoint()
        saves.append(comm.allreduce(time.perf_counter() - t0, op="max"))
    path = checkpoint.list_checkpoints(tmp / "io" / "checkpoints")[-1]
    size = path.stat().st_size
    for _ in range(args.repeat):
        comm.barrier()
        t0 = time.perf_counter()
        trainer.restore(checkpoint.load(path))
        loads.append(comm.allreduce(time.perf_counter() - t0, op="max"))

    n_params = comm.allreduce(sum(p.numel() for p in trainer.solver.model.parameters()))
    rows = []
    for every in (0, 50, 20, 10, 5):
        trainer = build(comm, tmp / f"every{every}", args, every)
        comm.barrier()
        t0 = time.perf_counter()
        trainer.train()
        rows.append((every, comm.allreduce(time.perf_counter() - t0, op="max") / args.steps))
    if comm.rank == 0:
        base = rows[0][1]
        lines = [
            f"64 subdomains (heat 1D+t, grid 8x8), width {args.width} x depth 4, float64, "
            f"{n_params} parameters in all, {comm.size} ranks; checkpoint file {size / 1e6:.1f} MB "
            "(parameters + Adam moments).",
            "",
            f"Command: `mpiexec -n {comm.size} python bench/checkpoint.py --width {args.width} "
            f"--steps {args.steps}`",
            "",
            "| operation | median | min |",
            "| --- | --- | --- |",
            f"| write checkpoint (gather to rank 0, atomic write) | "
            f"{statistics.median(saves) * 1e3:.0f} ms | {min(saves) * 1e3:.0f} ms |",
            f"| restore (read, verify, scatter by sid) | {statistics.median(loads) * 1e3:.0f} ms "
            f"| {min(loads) * 1e3:.0f} ms |",
            "",
            "| checkpoint every | step time | overhead |",
            "| --- | --- | --- |",
        ]
        for every, t in rows:
            label = "never" if every == 0 else f"{every} steps"
            lines.append(f"| {label} | {t * 1e3:.1f} ms | {100 * (t / base - 1):+.1f} % |")
        body = "\n".join(lines)
        print(body)
        update_section(ROOT / "BENCHMARKS.md", "Checkpoints", body)


if __name__ == "__main__":
    main()

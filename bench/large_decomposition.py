"""Set-up time per phase and memory per rank of large 3D+t decompositions (Beltrami flow,
tiny experts: width 8, depth 2; 16 interior, 8 boundary and 8 interface points).

    python bench/large_decomposition.py [--ranks 1 4] [--grids 4x4x4x8 8x8x8x8]

launches one ``mpiexec -n R`` job per (grid, R), so every configuration has a fresh process
and its own peak RSS, and writes the table into BENCHMARKS.md (section "Large
decompositions"). Each job runs ``--worker``: it sets up the case, takes two Adam steps and
prints, on rank 0, max and mean over ranks of every phase and of each rank's memory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

TINY = ["network.width=8", "network.depth=2", "points.interior=16", "points.boundary=8",
        "points.interface=8", 'case.dtype="float32"']
PHASES = ["problem", "partition", "experts", "points", "interface_plan", "first_step",
          "second_step", "checkpoint_write", "checkpoint_read"]


def worker(grid):
    import tempfile

    import torch

    from ddpinn.io import checkpoint
    from ddpinn.io.config import load
    from ddpinn.parallel import world
    from ddpinn.parallel.errors import install_abort_hook
    from ddpinn.problem import build_problem
    from ddpinn.training.footprint import over_ranks, rank_footprint
    from ddpinn.training.optimizers import build_optimizer
    from ddpinn.training.solver import Solver
    from ddpinn.training.trainer import Trainer

    comm = world()
    install_abort_hook(comm)
    torch.set_num_threads(1)
    comm.barrier()
    cpu0, t0 = time.process_time(), time.perf_counter()
    cfg = load(ROOT / "cases" / "beltrami3d.toml", [f"decomposition.grid={grid}", *TINY])
    problem = build_problem(cfg)
    seconds = {"problem": time.perf_counter() - t0}
    solver = Solver(problem, comm)
    seconds.update(solver.setup_seconds)
    setup_cpu = time.process_time() - cpu0
    at_start = rank_footprint(solver)
    opt = build_optimizer(solver, cfg.stages[0], 1e-3)  # the case's first stage: Adam
    losses = []
    for name in ("first_step", "second_step"):
        comm.barrier()
        t0 = time.perf_counter()
        loss, _ = opt.step(solver.closure, lambda loss, metrics: None)
        seconds[name] = time.perf_counter() - t0
        losses.append(loss)
    # A checkpoint with the Adam moments, written and read back as a run does it.
    tmp = Path(comm.bcast(tempfile.mkdtemp(prefix="ddpinn-large-") if comm.rank == 0 else None))
    trainer = Trainer(solver, tmp)
    trainer.optimizer = opt
    comm.barrier()
    t0 = time.perf_counter()
    trainer.save_checkpoint()
    seconds["checkpoint_write"] = time.perf_counter() - t0
    path = checkpoint.list_checkpoints(trainer.ckpt_dir)[-1]
    comm.barrier()
    t0 = time.perf_counter()
    trainer.restore(checkpoint.load(path))
    seconds["checkpoint_read"] = time.perf_counter() - t0
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    times = over_ranks(comm, {**seconds, "setup_cpu": setup_cpu})
    memory = {"start": over_ranks(comm, at_start),
              "steps": over_ranks(comm, rank_footprint(solver))}
    if comm.rank == 0:
        print(json.dumps({"grid": grid, "ranks": comm.size, "subdomains":
                          solver.decomposition.n_subdomains,
                          "interfaces": len(solver.decomposition.interfaces),
                          "times": times, "memory": memory, "losses": losses}))


def launch(grid, ranks) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), sys.executable,
           str(Path(__file__).resolve()), "--worker", grid]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results) -> str:
    head = [f"{r['subdomains']} ({'x'.join(map(str, r['grid']))}), {r['ranks']} "
            f"rank{'s' if r['ranks'] > 1 else ''}" for r in results]
    lines = ["| phase, wall s (max / mean over ranks) | " + " | ".join(head) + " |",
             "| --- |" + " --- |" * len(results)]
    for phase in PHASES:
        cells = [f"{r['times'][phase][0]:.3f} / {r['times'][phase][1]:.3f}" for r in results]
        lines.append(f"| {phase.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines.append("| set-up total (problem to interface plan), max | " + " | ".join(
        f"{sum(r['times'][p][0] for p in PHASES[:5]):.2f}" for r in results) + " |")
    lines.append("| set-up CPU time, max | " + " | ".join(
        f"{r['times']['setup_cpu'][0]:.2f}" for r in results) + " |")
    mb = 2.0 ** 20
    for when, label in (("start", "after set-up"), ("steps", "after 2 steps")):
        lines.append(f"| peak RSS per rank {label}, MB (max / mean) | " + " | ".join(
            "{:.0f} / {:.0f}".format(*(v / mb for v in r["memory"][when]["peak_rss"]))
            for r in results) + " |")
    for key in ("parameters", "points"):
        lines.append(f"| {key} per rank, MB (max) | " + " | ".join(
            f"{r['memory']['start'][key][0] / mb:.2f}" for r in results) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", metavar="GRID", help="(internal) run one configuration")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--grids", nargs="+", default=["4x4x4x8", "8x8x8x8"])
    args = ap.parse_args()
    if args.worker:
        worker([int(g) for g in args.worker.split("x")])
        return
    load_before = os.getloadavg()
    results = [launch(g, r) for g in args.grids for r in args.ranks]
    load_after = os.getloadavg()
    import torch

    command = "python bench/large_decomposition.py" + (
        f" --ranks {' '.join(map(str, args.ranks))}" if args.ranks != [1, 4] else "") + (
        f" --grids {' '.join(args.grids)}" if args.grids != ["4x4x4x8", "8x8x8x8"] else "")
    body = "\n".join([
        "Beltrami flow on [-1, 1]^3 x [0, 1] cut into a 3D+t grid; experts of width 8 and "
        "depth 2, 16 interior, 8 boundary and 8 interface points each, float32, one torch "
        "thread per rank. Phases as a run logs them: problem (case file, decomposition), "
        "partition, experts (sid-keyed initialisation), points, interface plan; then two Adam "
        "steps (loss, interface exchange, backward), then one checkpoint (parameters and Adam "
        "moments) written and restored as a run does it. Each configuration is its own "
        "`mpiexec` job; memory is each rank's peak RSS (`getrusage`) and the bytes of its "
        "experts' parameters and padded point batch.",
        "",
        table(results),
        "",
        f"Command: `{command}`; torch {torch.__version__}, {os.cpu_count()} cores shared "
        f"with other jobs (4 ranks are oversubscribed); load average "
        f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end.",
    ])
    print(body)
    from report import update_section

    update_section(ROOT / "BENCHMARKS.md", "Large decompositions", body)


if __name__ == "__main__":
    main()

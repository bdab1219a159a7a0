"""Run under mpiexec: set up a large 3D+t decomposition and check it across real ranks.

    mpiexec -n 4 python tests/mpi/large_decomposition.py GRID_X GRID_Y GRID_Z GRID_T

Checks that the partition is balanced, that each rank's points are those a single rank draws
for the same sids, and that both sides of every interface hold identical points, by sending
each side's coordinates through the interface exchange itself. Any failed check aborts all
ranks; rank 0 prints one JSON line with the sizes checked.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]

from ddpinn.interface import exchange  # noqa: E402
from ddpinn.io.config import load  # noqa: E402
from ddpinn.parallel import world  # noqa: E402
from ddpinn.parallel.errors import install_abort_hook  # noqa: E402
from ddpinn.problem import build_problem  # noqa: E402
from ddpinn.training.points import build_points  # noqa: E402
from ddpinn.training.solver import Solver  # noqa: E402

TINY = ("network.width=8", "network.depth=2", "points.interior=16", "points.boundary=8",
        "points.interface=8", 'case.dtype="float64"')


def main():
    comm = world()
    install_abort_hook(comm)
    grid = [int(g) for g in sys.argv[1:5]]
    cfg = load(ROOT / "cases" / "beltrami3d.toml", [f"decomposition.grid={grid}", *TINY])
    problem = build_problem(cfg)
    solver = Solver(problem, comm)
    d, batch, plan = solver.decomposition, solver.batch, solver.plan

    # Balanced partition, and this rank's experts are exactly its block.
    counts = np.bincount(solver.owner, minlength=comm.size)
    assert counts.max() - counts.min() <= 1, counts
    assert solver.sids == np.flatnonzero(solver.owner == comm.rank).tolist()

    # The points of a sid do not depend on the rank count: same bits as one rank's batch.
    alone = build_points(d, list(range(d.n_subdomains)), problem.pde, cfg.points,
                         cfg.case.seed, problem.pde.params, problem.time_axis)
    for name in ("x", "res_w", "bc_w", "bc_target"):
        assert torch.equal(getattr(batch, name), getattr(alone, name)[solver.sids]), name

    # Every side receives the other side's coordinates through the real exchange.
    mine = {"u": exchange.gather_sides(plan, batch.x)}  # (S, n, d) point coordinates
    other = exchange.complete(plan, comm, mine, exchange.post(plan, comm, mine))["u"]
    assert torch.equal(other, mine["u"]), "the two sides of an interface drew different points"
    iids = comm.allgather(plan.iid)
    sides = np.bincount(np.concatenate(iids), minlength=len(d.interfaces))
    assert np.all(sides == 2), "every interface has exactly two sides over all ranks"
    remote = comm.allgather(plan.remote_points())
    if comm.rank == 0:
        print(json.dumps({"subdomains": d.n_subdomains, "interfaces": len(d.interfaces),
                          "experts_per_rank": counts.tolist(), "remote_points": remote,
                          "sides_checked": int(sides.sum())}))


if __name__ == "__main__":
    main()

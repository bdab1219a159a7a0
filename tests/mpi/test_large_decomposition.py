"""A 3D+t decomposition of 8x8x8x8 = 4096 subdomains on 4 ranks: it sets up, its partition
and interfaces are consistent across real ranks, and it trains a few steps, logging the
memory of every rank."""
from __future__ import annotations

import json

import numpy as np

from .conftest import HERE, ROOT, check, losses, run_mpi

GRID = (8, 8, 8, 8)
TINY = ("network.width=8", "network.depth=2", "points.interior=16", "points.boundary=8",
        "points.interface=8")


def test_4096_subdomains_consistent_on_4_ranks():
    proc, _ = run_mpi(4, [HERE / "large_decomposition.py", *GRID], timeout=240)
    check(proc)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["subdomains"] == 4096
    # 3 * 7 * 8**3 space interfaces + 7 * 8**3 time interfaces, each seen from both sides.
    assert report["interfaces"] == 4 * 7 * 8 ** 3
    assert report["sides_checked"] == 2 * report["interfaces"]
    assert report["experts_per_rank"] == [1024] * 4
    assert min(report["remote_points"]) > 0  # the check went through MPI, not only locally


def test_4096_subdomains_train_on_4_ranks(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "ddpinn.cli", "run", ROOT / "cases" / "beltrami3d.toml",
            "--set", f'output.dir="{out}"', "--set", "output.plots=false",
            "--set", f"decomposition.grid={list(GRID)}", "--set", "stages.0.steps=3",
            "--set", "stages.1.steps=0", "--set", "output.eval_every=0",
            "--set", "output.grid=[3, 3, 3, 2]", "--set", "output.log_every=1"]
    for s in TINY:
        args += ["--set", s]
    proc, _ = run_mpi(4, args, timeout=240)
    check(proc)
    loss = losses(out)
    assert sorted(loss) == [0, 1, 2]
    assert np.isfinite(list(loss.values())).all() and loss[2] < loss[0]
    memory = [ln for ln in proc.stderr.splitlines()
              if "memory per rank at start (max / mean over 4 ranks): peak RSS" in ln]
    assert len(memory) == 1, proc.stderr  # logged once, by rank 0
    assert "parameters" in memory[0] and "points" in memory[0]
    assert "set-up (max / mean over ranks): problem" in proc.stderr
    assert "memory per rank after training" in proc.stderr

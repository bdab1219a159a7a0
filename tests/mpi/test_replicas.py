"""Data-parallel replicas (parallel.replicas = R): R ranks share a block of experts, each with a
share of the points. The loss is the same function as without replicas, so 4 ranks in 2 groups
of 2 replicas follow the trajectory of 2 ranks without replicas (Adam and L-BFGS), with every
allreduce backend; checkpoints move between runs with and without replicas."""
from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from .conftest import HERE, check, losses, run_case, run_mpi

CASE = HERE / "cases" / "invariance.toml"
# 60 Adam steps then 20 L-BFGS iterations; checkpoints inside each stage.
SHORT = ("stages.0.steps=60", "stages.1.steps=20", "output.eval_every=0")
STEPS = list(range(80))
HAVE_HOROVOD = importlib.util.find_spec("horovod") is not None
BACKENDS = ["mpi4py", "torch", pytest.param("horovod", marks=pytest.mark.skipif(
    not HAVE_HOROVOD, reason="Horovod not installed (launch/install_horovod.sh builds it)"))]


def _max_rel(a: dict, b: dict, steps) -> float:
    x = np.array([a[s] for s in steps])
    y = np.array([b[s] for s in steps])
    return float(np.max(np.abs(x - y) / np.abs(x)))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """2 ranks, no replicas."""
    out = tmp_path_factory.mktemp("ref") / "run"
    check(run_case(2, CASE, out, *SHORT, "output.checkpoint_every=10")[0])
    return out


@pytest.fixture(scope="module")
def replica_run(tmp_path_factory):
    """4 ranks: 2 groups of 2 replicas (mpi4py backend)."""
    out = tmp_path_factory.mktemp("replicas") / "run"
    check(run_case(4, CASE, out, *SHORT, "parallel.replicas=2",
                   "output.checkpoint_every=10")[0])
    return out


def test_replicas_follow_the_trajectory_without_replicas(reference_run, replica_run):
    ref, got = losses(reference_run), losses(replica_run)
    assert sorted(got) == STEPS == sorted(ref)
    # Point shares only change the order of sums: Adam (0-59) and L-BFGS (60-79) agree.
    assert _max_rel(ref, got, STEPS) <= 1e-9
    assert ref[79] < 0.5 * ref[0]  # it trains


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_replicas_with_every_backend(reference_run, tmp_path, backend):
    """The group sum goes through the backend's sub-group (torch new_group, Horovod process
    set)."""
    out = tmp_path / backend
    check(run_case(4, CASE, out, *SHORT, "parallel.replicas=2",
                   f'parallel.backend="{backend}"')[0])
    ref, got = losses(reference_run), losses(out)
    assert sorted(got) == STEPS
    assert _max_rel(ref, got, STEPS) <= 1e-9


def test_one_group_of_four_replicas(reference_run, tmp_path):
    out = tmp_path / "r4"
    check(run_case(4, CASE, out, *SHORT, "parallel.replicas=4")[0])
    assert _max_rel(losses(reference_run), losses(out), STEPS) <= 1e-9


@pytest.mark.parametrize("step", [40, 70])  # inside Adam, inside L-BFGS
def test_checkpoint_with_replicas_resumes_without(reference_run, replica_run, tmp_path, step):
    ckpt = replica_run / "checkpoints" / f"ckpt_{step:08d}.pt"
    from ddpinn.io import checkpoint

    state = checkpoint.load(ckpt)
    assert checkpoint.sids_in(state) == list(range(8))  # every sid once
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, resumed / "checkpoints")
    check(run_case(2, CASE, resumed, *SHORT, resume="auto")[0])
    got = losses(resumed)
    assert sorted(got) == list(range(step, 80))
    assert _max_rel(losses(reference_run), got, range(step, 80)) <= 1e-9


def test_checkpoint_without_replicas_resumes_with(reference_run, tmp_path):
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(reference_run / "checkpoints" / "ckpt_00000040.pt", resumed / "checkpoints")
    check(run_case(4, CASE, resumed, *SHORT, "parallel.replicas=2", resume="auto")[0])
    got = losses(resumed)
    assert sorted(got) == list(range(40, 80))
    assert _max_rel(losses(reference_run), got, range(40, 80)) <= 1e-9


@pytest.mark.parametrize("sets, ranks, message", [
    (["parallel.replicas=3"], 4,
     "field 'parallel.replicas' = 3 does not divide the 4 ranks"),
    (["parallel.replicas=2", "decomposition.grid=[1, 1]"], 4,
     "4 ranks with parallel.replicas = 2 make 2 groups but only 1 subdomains"),
    (["parallel.replicas=0"], 2, "field 'parallel.replicas' = 0 must be >= 1"),
    (["parallel.replicas=2", "points.interface=1"], 2,
     "field 'points.interface' = 1 must be >= parallel.replicas = 2"),
])
def test_bad_replica_counts_give_one_clear_error(tmp_path, sets, ranks, message):
    out = tmp_path / "bad"
    proc, secs = run_case(ranks, CASE, out, *SHORT, *sets, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count(message) == 1, proc.stderr
    assert not out.exists()  # nothing written


GROUP_SCRIPT = """
import sys, torch
from ddpinn.parallel import world
from ddpinn.parallel.backends import make_backend
from ddpinn.parallel.replicas import make_layout
comm = world()
layout = make_layout(comm, int(sys.argv[2]), n_subdomains=8)
backend = make_backend(sys.argv[1], comm, layout)
x = torch.full((5,), float(comm.rank + 1), dtype=torch.float64)
backend.group_sum_(x)
members = [g * layout.replicas + r for g in [layout.group] for r in range(layout.replicas)]
assert torch.equal(x, torch.full((5,), float(sum(m + 1 for m in members)),
                                 dtype=torch.float64)), (comm.rank, x)
# The peer communicator pairs replica r of every group, ranked by group.
assert layout.peer_comm.size == layout.groups and layout.peer_comm.rank == layout.group
y = torch.ones(3, dtype=torch.float64)
backend.allreduce_sum_(y)  # the world sum is unchanged
assert torch.equal(y, torch.full((3,), float(comm.size), dtype=torch.float64))
if comm.rank == 0:
    print("OK", type(backend).__name__, layout.groups, layout.replicas)
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("replicas", [2, 4])
def test_backend_sums_over_the_group_only(tmp_path, backend, replicas):
    script = tmp_path / "group_sum.py"
    script.write_text(GROUP_SCRIPT)
    proc, _ = run_mpi(4, [script, backend, replicas], timeout=120)
    check(proc)
    assert "OK" in proc.stdout and f" {4 // replicas} {replicas}" in proc.stdout

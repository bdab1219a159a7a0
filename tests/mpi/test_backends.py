"""Allreduce backends (mpi4py, torch.distributed, Horovod) agree, inside real mpiexec jobs."""
from __future__ import annotations

import importlib.util
import os

import pytest

from .conftest import HERE, check, losses, run_case, run_mpi

HAVE_HOROVOD = importlib.util.find_spec("horovod") is not None
if os.environ.get("DDPINN_REQUIRE_HOROVOD") == "1" and not HAVE_HOROVOD:
    raise RuntimeError("DDPINN_REQUIRE_HOROVOD=1 but Horovod is not installed")
BACKENDS = ["mpi4py", "torch", pytest.param("horovod", marks=pytest.mark.skipif(
    not HAVE_HOROVOD, reason="Horovod not installed (launch/install_horovod.sh builds it)"))]

SCRIPT = """
import sys, torch
from ddpinn.parallel import world
from ddpinn.parallel.backends import make_backend
comm = world()
backend = make_backend(sys.argv[1], comm)
g = torch.Generator().manual_seed(100 + comm.rank)
x = torch.randn(1000, dtype=torch.float64, generator=g)
want = sum(torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + r))
           for r in range(comm.size))
backend.allreduce_sum_(x)
err = float((x - want).abs().max())
assert err < 1e-12, err
if comm.rank == 0:
    print("OK", type(backend).__name__, comm.size, err)
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ranks", [2, 4])
def test_backend_sums_across_ranks(tmp_path, backend, ranks):
    script = tmp_path / "allreduce.py"
    script.write_text(SCRIPT)
    proc, _ = run_mpi(ranks, [script, backend], timeout=120)
    check(proc)
    assert "OK" in proc.stdout and f" {ranks} " in proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_inverse_problem_same_losses_with_every_backend(tmp_path, backend):
    """The shared diffusivity's gradient goes through the backend; trajectories must match."""
    case = HERE / "cases" / "invariance.toml"
    sets = ("stages.0.steps=30", "stages.1.steps=5", "output.eval_every=0")
    ref_dir, out = tmp_path / "ref", tmp_path / backend
    check(run_case(2, case, ref_dir, *sets, "parallel.backend=\"mpi4py\"")[0])
    check(run_case(2, case, out, *sets, f"parallel.backend=\"{backend}\"")[0])
    ref, got = losses(ref_dir), losses(out)
    assert sorted(ref) == sorted(got) == list(range(35))
    assert all(abs(ref[s] - got[s]) <= 1e-10 * abs(ref[s]) for s in ref)

"""Bad input and failures under mpiexec: one clear message, non-zero exit, never a hang."""
from __future__ import annotations

import time

import pytest

from .conftest import ROOT, run_case, run_mpi

POISSON = ROOT / "cases" / "poisson2d.toml"
FAST = ("stages.0.steps=3", "stages.1.steps=0", "points.interior=50")


BAD_INPUT = [
    (["pde.name=\"poison\""], "pde.name", "poisson"),
    (["interface.conditions=[\"average_solution\", \"flux_continuty\"]"],
     "interface.conditions", "flux_continuity"),
    (["decomposition.grid=[0, 2]"], "decomposition.grid", "positive"),
    (["network.widht=8"], "network.widht", "did you mean 'width'"),
    (["stages.0.optimizer=\"sgd\""], "stages[0].optimizer", "adam, lbfgs"),
    (["decomposition.grid=[1, 1]"], "ranks but only 1 subdomains", "at most 1"),
]


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("overrides,field,allowed", BAD_INPUT,
                         ids=[b[1] for b in BAD_INPUT])
def test_bad_input_one_message_nonzero_exit(tmp_path, ranks, overrides, field, allowed):
    out = tmp_path / "run"
    proc, secs = run_case(ranks, POISSON, out, *overrides, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(lines) == 1, proc.stderr  # printed once, by rank 0
    assert field in lines[0] and allowed in lines[0], lines[0]
    assert not out.exists()  # nothing written


def test_missing_required_field(tmp_path):
    case = tmp_path / "case.toml"
    case.write_text(POISSON.read_text().replace('name = "poisson"\n', ""))
    proc, _ = run_case(2, case, tmp_path / "run", timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(lines) == 1 and "'pde.name'" in lines[0], proc.stderr


def test_exception_on_one_rank_ends_job_quickly(tmp_path):
    proc, secs = run_case(4, POISSON, tmp_path / "run", *FAST, "stages.0.steps=1000",
                          "pde.name=\"tests.mpi.faulty:FailingPoisson\"", timeout=60,
                          env={"FAIL_RANK": "1", "FAIL_AFTER": "5"})
    assert proc.returncode != 0
    assert "injected failure on one rank" in proc.stderr
    assert "aborting all 4 ranks" in proc.stderr
    # The whole job, start-up included, ends long before a hang could be mistaken for work.
    assert secs < 30, secs


def test_raise_during_collective_wait_aborts_within_10s(tmp_path):
    script, stamp = tmp_path / "raise_one.py", tmp_path / "raised_at"
    script.write_text(
        "import time\n"
        "from ddpinn.parallel import world\n"
        "from ddpinn.parallel.errors import install_abort_hook\n"
        "comm = world(); install_abort_hook(comm)\n"
        "comm.barrier()\n"
        "t0 = time.time()\n"
        "if comm.rank == 2:\n"
        f"    open({str(stamp)!r}, 'w').write(repr(time.time()))\n"
        "    raise ValueError('boom')\n"
        "comm.allreduce(1.0)  # the others wait here forever without the abort\n")
    proc, _ = run_mpi(4, [script], timeout=60)
    ended = time.time()
    assert proc.returncode != 0
    assert "boom" in proc.stderr
    assert ended - float(stamp.read_text()) < 10

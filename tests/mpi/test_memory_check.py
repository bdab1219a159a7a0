"""A decomposition that cannot fit is refused on every rank before anything is written,
and a large one that fits logs its set-up phases."""
from __future__ import annotations

import pytest

from .conftest import HERE, run_case


@pytest.fixture
def deck():
    return HERE / "cases" / "poisson3d.toml"


def _refused(proc, secs, out, limit_text):
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]  # one message, from rank 0
    assert "not enough memory: estimated peak per rank" in errors[0]
    assert limit_text in errors[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing written
    assert secs < 60


def test_limit_from_the_environment_refuses_up_front(deck, tmp_path):
    out = tmp_path / "run"
    proc, secs = run_case(2, deck, out, env={"DDPINN_MEMORY_LIMIT": "50MB"}, timeout=120)
    _refused(proc, secs, out, "limit of 50 MB per rank (DDPINN_MEMORY_LIMIT)")


def test_huge_grid_refused_against_the_node_memory(deck, tmp_path):
    out = tmp_path / "run"
    proc, secs = run_case(2, deck, out, "decomposition.grid=[64, 64, 64]", timeout=120)
    _refused(proc, secs, out, "MemAvailable")
    assert "131072 experts" in proc.stderr


def test_large_setup_logs_its_phases(deck, tmp_path):
    out = tmp_path / "run"
    proc, _ = run_case(2, deck, out, "decomposition.grid=[16, 16, 10]", "network.width=4",
                       "network.depth=1", "points.interior=4", "points.boundary=2",
                       "points.interface=2", "stages.1.steps=0", "output.grid=[4, 4, 4]",
                       quiet=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for phase in ("partition done", "experts built", "points drawn"):
        assert f"set-up of 1280 subdomains on this rank: {phase}" in proc.stderr, phase

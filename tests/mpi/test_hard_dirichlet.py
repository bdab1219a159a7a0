"""Hard Dirichlet conditions on a shaped domain (a square with a round hole, Poisson): the
same loss trajectory on 1 and 2 ranks, no boundary misfit from the first step on, training
lowers the error, and the solution file meets the data on the boundary exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import HERE, check, metric_rows, run_case

CASE = HERE / "cases" / "hard_dirichlet.toml"
STEPS = 40  # 30 Adam + 10 L-BFGS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for ranks in (1, 2):
        out[ranks] = tmp_path_factory.mktemp(f"hard{ranks}") / "run"
        check(run_case(ranks, CASE, out[ranks])[0])
    return out


def test_hard_dirichlet_same_trajectory_on_one_and_two_ranks(runs):
    ref, got = (metric_rows(runs[n]) for n in (1, 2))
    assert [r["step"] for r in ref] == [r["step"] for r in got] == list(range(STEPS))
    a, b = (np.array([r["loss"] for r in rows]) for rows in (ref, got))
    assert np.max(np.abs(a - b) / np.abs(a)) <= 1e-10


def test_hard_dirichlet_boundary_misfit_vanishes_and_training_lowers_the_error(runs):
    rows = metric_rows(runs[2])
    assert max(r["boundary"] for r in rows) <= 1e-24  # the rows stay in the loss: a live check
    first = [r["l2_u"] for r in rows if "l2_u" in r][0]
    final = json.loads((runs[2] / "errors.json").read_text())["l2_u"]
    assert np.isfinite(first) and final < 0.2 * first, (first, final)
    assert rows[-1]["loss"] < 0.1 * rows[0]["loss"]


def test_hard_dirichlet_solution_file_meets_the_data_on_the_boundary(runs):
    import netCDF4

    with netCDF4.Dataset(runs[2] / "solution.nc") as ds:
        x, y, u = ds["x"][:], ds["y"][:], ds["u"][:]
    X, Y = np.meshgrid(x, y, indexing="ij")
    edge = (X == 0) | (X == 1) | (Y == 0) | (Y == 1)
    assert edge.sum() >= 4 * (len(x) - 1)
    exact = np.sin(np.pi * X) * np.sin(np.pi * Y)
    assert np.abs(u - exact)[edge].max() <= 1e-12
    assert np.abs(u - exact)[~edge].max() > 1e-6  # inside, the networks' own


@pytest.mark.parametrize("sets, words", [
    (("boundary.0.hard=true",), ["boundary[0].hard", "'outer'", "interior"]),  # L-shape edges
    (("boundary.1.hard=true",), ["boundary[1].hard", "'neumann'"]),
])
def test_bad_hard_input_is_one_message_and_nothing_written(tmp_path, sets, words):
    out = tmp_path / "run"
    proc, _ = run_case(2, HERE / "cases" / "shape_invariance.toml", out, *sets, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    for w in words:
        assert w in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(set(errors)) == 1, proc.stderr[-3000:]
    assert not out.exists()

"""A domain with a shape (cut cells, dropped cells, conditions per tag) keeps the project's
central property: 1, 2 and 4 ranks follow the same loss trajectory, and a checkpoint
written on 4 ranks resumes on 2 (and 1) with the losses of an uninterrupted run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from .conftest import HERE, check, losses, run_case

CASE = HERE / "cases" / "shape_invariance.toml"
STEPS = 80  # 60 Adam + 20 L-BFGS


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    out = tmp_path_factory.mktemp("shape1") / "run"
    check(run_case(1, CASE, out, "output.checkpoint_every=40")[0])
    return out


def _max_rel(a: dict, b: dict, steps) -> float:
    x, y = np.array([a[s] for s in steps]), np.array([b[s] for s in steps])
    return float(np.max(np.abs(x - y) / np.abs(x)))


@pytest.mark.parametrize("ranks", [2, 4])
def test_shape_domain_same_trajectory_on_any_rank_count(one_rank, tmp_path, ranks):
    out = tmp_path / "run"
    check(run_case(ranks, CASE, out)[0])
    ref, got = losses(one_rank), losses(out)
    assert sorted(got) == sorted(ref) == list(range(STEPS))
    assert _max_rel(ref, got, range(STEPS)) <= 1e-10
    assert ref[STEPS - 1] < 0.5 * ref[0]  # it trains


@pytest.mark.parametrize("ranks_after", [2])
def test_shape_domain_checkpoint_resumes_on_another_rank_count(one_rank, tmp_path,
                                                                ranks_after):
    four = tmp_path / "four"
    check(run_case(4, CASE, four, "output.checkpoint_every=40")[0])
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(four / "checkpoints" / "ckpt_00000040.pt", resumed / "checkpoints")
    check(run_case(ranks_after, CASE, resumed, resume="auto")[0])  # mid-Adam, then L-BFGS
    ref, got = losses(one_rank), losses(resumed)
    assert sorted(got) == list(range(40, STEPS))
    assert _max_rel(ref, got, range(40, STEPS)) <= 1e-10


def test_shape_domain_outputs_are_masked_outside(one_rank):
    """The solution grid is masked where the domain is not (the missing corner, the hole)."""
    import netCDF4

    with netCDF4.Dataset(one_rank / "solution.nc") as ds:
        x, y = ds["x"][:], ds["y"][:]
        u = ds["u"][:]
    assert np.ma.isMaskedArray(u) and u.mask.any() and not u.mask.all()
    X, Y = np.meshgrid(x, y, indexing="ij")
    corner = (X > 0.55) & (Y > 0.55)
    hole = (X - 0.25) ** 2 + (Y - 0.25) ** 2 < 0.08 ** 2
    assert u.mask[corner].all() and u.mask[hole].all()
    inside = (X < 0.45) & (Y > 0.4) & (Y < 0.95)
    assert not u.mask[inside].any()
    errors = json.loads((one_rank / "errors.json").read_text())
    assert "l2_u" in errors  # the error is written (masked points are left out of it)

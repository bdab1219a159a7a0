"""The estimated peak memory of a rank against the peak that a run measures, and the
memory check that refuses a decomposition that cannot fit."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ddpinn.io.config import load
from ddpinn.parallel import SerialComm
from ddpinn.parallel.errors import DDPINNError
from ddpinn.problem import build_problem
from ddpinn.training.memory import (LIMIT_ENV, MB, check_memory, estimate_rank_memory,
                                    parse_bytes)

ROOT = Path(__file__).resolve().parents[2]

# 3D Poisson with the default points (500 interior, 64 per boundary face, 32 per interface).
DECK = ROOT / "tests" / "mpi" / "cases" / "poisson3d.toml"


@pytest.fixture
def deck():
    return DECK


# Dirichlet tables on every face: the boundary rows form the value-only block, a plain
# forward pass each (9000 of the 9693 rows of a corner expert with 3000 points per face).
VALUE_ROWS = ['boundary=[{tags = ["x_lower", "x_upper", "y_lower", "y_upper", "z_lower", '
              '"z_upper"], kind = "dirichlet", values = "exact"}]', "points.boundary=3000"]


def _estimate(deck, n, ranks=1, sets=()):
    cfg = load(deck, [f"decomposition.grid=[{n}, {n}, {n}]", *sets])
    return estimate_rank_memory(cfg, build_problem(cfg), ranks)


def _measured_peak(deck, n, out, sets=()) -> float:
    """Peak RSS in MB of a one-rank run (Adam step, L-BFGS step), from its log."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop(LIMIT_ENV, None)
    extra = [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(
        [sys.executable, "-m", "ddpinn.cli", "run", str(deck), "--set",
         f"decomposition.grid=[{n}, {n}, {n}]", "--set", f'output.dir="{out}"', *extra],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stderr.splitlines() if "memory per rank after training" in ln]
    assert len(line) == 1, proc.stderr[-3000:]
    return float(re.search(r"peak RSS ([0-9.]+) / ", line[0]).group(1))


@pytest.mark.parametrize("n", [4, 8])
def test_estimate_within_a_factor_2_of_the_measured_peak(deck, tmp_path, n):
    estimate = _estimate(deck, n)["total"] / MB
    measured = _measured_peak(deck, n, tmp_path / "run")
    assert measured / 2 <= estimate <= 2 * measured, (n, estimate, measured)


def test_value_only_rows_estimated_at_their_own_cost(deck, tmp_path):
    """Value-only rows cost a plain forward pass: counted at the derivative rows' cost, this
    deck's estimate would be 3.3x its measured peak."""
    est = _estimate(deck, 4, sets=VALUE_ROWS)
    measured = _measured_peak(deck, 4, tmp_path / "run", VALUE_ROWS)
    assert measured / 2 <= est["total"] / MB <= 2 * measured, (est["total"] / MB, measured)
    same_rows = _estimate(deck, 4, sets=VALUE_ROWS[1:])  # boundary rows with derivatives
    assert abs(same_rows["rows"] - est["rows"]) < 0.02 * est["rows"]
    assert same_rows["step"] > 3 * est["step"]


def test_estimate_grows_with_the_grid_and_shrinks_with_ranks(deck):
    totals = [_estimate(deck, n, 2)["total"] for n in (2, 4, 8, 16, 32)]
    assert totals == sorted(totals) and len(set(totals)) == len(totals), totals
    by_ranks = [_estimate(deck, 8, r)["total"] for r in (1, 2, 4, 8)]
    assert by_ranks == sorted(by_ranks, reverse=True), by_ranks
    est = _estimate(deck, 16, 2)
    assert est["experts"] == 2048 and est["phase"] == "training"
    # The activations of a step dominate, not the points or the parameters.
    assert est["step"] > 10 * (est["points"] + est["parameters"])


def test_parse_bytes():
    assert parse_bytes("2GB") == 2 * 2 ** 30
    assert parse_bytes("500 MB") == 500 * 2 ** 20
    assert parse_bytes("1.5GiB") == int(1.5 * 2 ** 30)
    assert parse_bytes("123456") == 123456
    with pytest.raises(ValueError, match=LIMIT_ENV):
        parse_bytes("lots")


def test_check_refuses_with_the_estimate_and_the_limit(deck, monkeypatch):
    cfg = load(deck, [])
    problem = build_problem(cfg)
    monkeypatch.setenv(LIMIT_ENV, "50MB")
    with pytest.raises(DDPINNError) as err:
        check_memory(cfg, problem, SerialComm())
    text = str(err.value)
    assert "estimated peak per rank" in text and "limit of 50 MB" in text
    assert "decomposition.grid" in text
    monkeypatch.setenv(LIMIT_ENV, "64GB")
    assert check_memory(cfg, problem, SerialComm())["total"] < 64 * 2 ** 30
    monkeypatch.setenv(LIMIT_ENV, "much")
    with pytest.raises(DDPINNError, match=LIMIT_ENV):
        check_memory(cfg, problem, SerialComm())

"""Cases that read files, run for real under mpiexec: the data loss of an inverse problem
follows the same trajectory on 1, 2 and 4 ranks and recovers the unknown coefficient from
noisy measurements; bad files stop the run with one message and write nothing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import ROOT, check, metric_rows, run_case

CASE = ROOT / "cases" / "heat1d_inverse_csv.toml"
KAPPA = 0.1
SHORT = ("stages.0.steps=40", "stages.1.steps=10", "output.log_every=10",
         "output.eval_every=25")


def write_measurements(path, n=256, noise=0.01, seed=11):
    """The test's own measurements of u = exp(-kappa pi^2 t) sin(pi x), 1 % noise."""
    rng = np.random.default_rng(seed)
    x, t = rng.random(n), rng.random(n)
    u = np.exp(-KAPPA * math.pi ** 2 * t) * np.sin(math.pi * x)
    u += noise * rng.standard_normal(n)
    np.savetxt(path, np.stack([x, t, u], 1), delimiter=",", header="x,t,u", comments="")
    return path


@pytest.fixture(scope="module")
def measurements(tmp_path_factory):
    return write_measurements(tmp_path_factory.mktemp("data") / "measurements.csv")


def _trajectory(run_dir):
    rows = metric_rows(run_dir)
    return {r["step"]: (r["loss"], r["data"]) for r in rows}


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, measurements):
    out = tmp_path_factory.mktemp("inv1") / "run"
    check(run_case(1, CASE, out, f'data.0.file="{measurements}"', *SHORT)[0])
    return out


@pytest.mark.parametrize("ranks", [2, 4])
def test_data_loss_same_trajectory_on_any_rank_count(one_rank, measurements, tmp_path, ranks):
    out = tmp_path / "run"
    check(run_case(ranks, CASE, out, f'data.0.file="{measurements}"', *SHORT)[0])
    ref, got = _trajectory(one_rank), _trajectory(out)
    assert sorted(ref) == sorted(got) == list(range(50))
    for step in ref:
        for a, b in zip(ref[step], got[step]):
            assert abs(a - b) <= 1e-10 * abs(a), (step, a, b)
    assert ref[49][1] < 0.2 * ref[0][1]  # the data misfit falls


def test_inverse_problem_recovers_the_coefficient_from_noisy_measurements(measurements,
                                                                          tmp_path):
    # 2 ranks: the trajectory is the same on any rank count (the test above), and 2 ranks on
    # a 2-core machine run it without time slicing.
    out = tmp_path / "run"
    check(run_case(2, CASE, out, f'data.0.file="{measurements}"', "output.log_every=500",
                   timeout=900)[0])
    kappa = metric_rows(out)[-1]["param_kappa"]
    assert abs(kappa - KAPPA) / KAPPA < 0.02, kappa


def _bad_files(tmp):
    (tmp / "nan.csv").write_text("x,t,u\n0.1,0.2,0.3\n0.7,0.7,nan\n")
    (tmp / "nocol.csv").write_text("x,time,u\n0.1,0.2,0.3\n")
    return {"NaN in a row": (f'data.0.file="{tmp / "nan.csv"}"', "nan.csv"),
            "missing column": (f'data.0.file="{tmp / "nocol.csv"}"', "nocol.csv"),
            "no such file": ('data.0.file="nowhere.csv"', "data.0.file")}


@pytest.mark.parametrize("name", ["NaN in a row", "missing column", "no such file"])
def test_bad_file_is_one_message_and_nothing_written(tmp_path, name):
    override, needle = _bad_files(tmp_path)[name]
    out = tmp_path / "run"
    proc, _ = run_case(2, CASE, out, override, *SHORT, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert needle in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(set(errors)) == 1, proc.stderr[-3000:]
    assert not out.exists()

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



SUBVOLUME = ROOT / "cases" / "tgv3d_re1600_subvolume.toml"
SMALL = ("points.interior=64", "points.boundary=32", "points.interface=16",
         "network.width=16", "network.depth=2", "network.fourier_features=8",
         "stages.0.steps=12", "stages.1.steps=4", "output.log_every=1",
         "output.eval_every=8", "output.plots=false")


def test_cubic_boundary_data_same_trajectory_on_any_rank_count(tmp_path):
    """Boundary data from a grid file by local cubic interpolation: each of 4 ranks reads
    its own part of the file, and the 8 experts follow the trajectory of one rank (on the
    small version of the turbulence files that tests/conftest.py makes)."""
    runs = {}
    for kind, ranks in (("cubic", 1), ("cubic", 4), ("linear", 1)):
        out = tmp_path / f"{kind}{ranks}"
        check(run_case(ranks, SUBVOLUME, out, f'data.0.interpolation="{kind}"', *SMALL,
                       timeout=600)[0])
        runs[kind, ranks] = _trajectory(out)
    ref, got = runs["cubic", 1], runs["cubic", 4]
    assert sorted(ref) == sorted(got) == list(range(16))
    for step in ref:
        for a, b in zip(ref[step], got[step]):
            assert abs(a - b) <= 1e-10 * abs(a), (step, a, b)
    # the cubic data are not the linear ones: the first loss already differs
    assert abs(runs["linear", 1][0][0] - ref[0][0]) > 1e-6 * ref[0][0]

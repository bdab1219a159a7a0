"""``ddpinn eval`` on a real trained run: the same values on 1 process and under
``mpiexec -n 4``, interface points on their documented side, agreement with ``solution.nc``,
``--grid`` output, and bad input ending every rank with status 2 and one message."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import torch

from ddpinn.io.config import load
from ddpinn.io.netcdf import read_solution
from ddpinn.problem import build_problem

from .conftest import HERE, ROOT, check, run_case, run_mpi

CASE = ROOT / "cases" / "poisson2d.toml"
TINY = ("stages.0.steps=20", "stages.1.steps=0", "points.interior=50", "network.width=8",
        "output.checkpoint_every=10", "output.grid=[11, 11]")


def eval_serial(*args):
    """``python -m ddpinn.cli eval ...`` without mpiexec (one process)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{HERE.parent.parent}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ddpinn.cli", "eval", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def eval_mpi(n, *args):
    proc, _ = run_mpi(n, ["-m", "ddpinn.cli", "eval", *args])
    return proc


def summary(proc) -> dict:
    check(proc)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout  # one JSON line, printed once
    return json.loads(lines[0])


def read_csv(path) -> dict:
    data = np.genfromtxt(path, delimiter=",", names=True)
    return {n: data[n] for n in data.dtype.names}


def write_csv(path, columns: dict):
    names = list(columns)
    rows = np.stack([columns[n] for n in names], axis=1)
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        for row in rows:
            fh.write(",".join(repr(float(v)) for v in row) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny poisson2d run (2x2 subdomains on [0, 1]^2, float32) trained on 2 ranks."""
    out = tmp_path_factory.mktemp("eval") / "run"
    proc, _ = run_case(2, CASE, out, *TINY)
    check(proc)
    return out


@pytest.fixture(scope="module")
def exact():
    problem = build_problem(load(CASE))
    pde = problem.pde

    def u(points):
        return pde.exact(torch.as_tensor(points), pde.params).numpy()[:, 0]
    return u


@pytest.fixture(scope="module")
def scattered(run, exact):
    """Random points, points on the interfaces x = 0.5 and y = 0.5 with twins a hair above
    and below, the corner of all four subdomains and boundary points; reference u."""
    rng = np.random.default_rng(7)
    pts = [rng.random((40, 2))]
    s = rng.random(6)
    eps = 1e-12
    for off in (0.0, eps, -eps):  # on, above, below: rows 40-51, 52-63, 64-75
        pts.append(np.concatenate([np.stack([np.full(6, 0.5 + off), s], 1),
                                   np.stack([s, np.full(6, 0.5 + off)], 1)]))
    pts.append(np.array([[0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [0.0, 0.7], [1.0, 0.5]]))
    pts = np.concatenate(pts)
    path = write_csv(run.parent / "nodes.csv",
                     {"y": pts[:, 1], "x": pts[:, 0], "u": exact(pts), "id": np.arange(len(pts))})
    return path, pts


@pytest.fixture(scope="module")
def serial(run, scattered):
    """``ddpinn eval RUN --points nodes.csv --derivatives`` on one process (no mpiexec)."""
    path, _ = scattered
    errors = run.parent / "errors.json"
    one = summary(eval_serial(run, "--points", path, "--derivatives", "--quiet",
                              "--errors", errors))
    return one, read_csv(run / "eval_nodes.csv"), errors


def test_one_process_and_four_ranks_agree(run, scattered, serial, exact, tmp_path):
    path, pts = scattered
    one, a, errors = serial
    assert one["out"] == str(run / "eval_nodes.csv") and one["points"] == len(pts)
    assert one["checkpoint"].endswith("ckpt_00000020.pt") and one["step"] == 20
    four = summary(eval_mpi(4, run, "--points", path, "--derivatives", "--quiet",
                            "--out", tmp_path / "four.csv"))
    b = read_csv(tmp_path / "four.csv")
    assert list(a) == ["x", "y", "u", "u_x", "u_y", "u_error"]
    np.testing.assert_array_equal(np.stack([a["x"], a["y"]], 1), pts)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-12, atol=1e-14, err_msg=name)
    # errors: printed, written, and what the values in the file give
    err = one["errors"]
    assert set(err) == {"l2_u", "max_abs_u"}
    ref = exact(pts)
    np.testing.assert_allclose(a["u_error"], a["u"] - ref, atol=1e-15)
    assert err["l2_u"] == pytest.approx(np.linalg.norm(a["u"] - ref) / np.linalg.norm(ref),
                                        rel=1e-12)
    assert err["max_abs_u"] == pytest.approx(np.abs(a["u"] - ref).max(), rel=1e-12)
    assert four["errors"] == pytest.approx(err, rel=1e-12)
    assert json.loads(errors.read_text())["errors"] == err


def test_interface_points_take_the_upper_side(serial):
    u = serial[1]["u"]
    on, above, below = u[40:52], u[52:64], u[64:76]
    # the point on an interface is the upper subdomain's value, 1e-12 away from its twin above
    np.testing.assert_allclose(on, above, atol=1e-9)
    assert np.abs(on - below).min() > 1e-6  # the lower subdomain's expert differs there


def test_values_at_grid_points_equal_solution_nc(run, tmp_path):
    sol = read_solution(run / "solution.nc")
    xs, ys = sol["axes"]["x"], sol["axes"]["y"]
    mesh = np.meshgrid(xs, ys, indexing="ij")  # includes x = 0.5 and y = 0.5
    path = write_csv(tmp_path / "grid.csv", {"x": mesh[0].ravel(), "y": mesh[1].ravel()})
    out = summary(eval_mpi(2, run, "--points", path, "--dtype", "float32", "--quiet",
                           "--out", tmp_path / "grid32.nc"))
    assert "errors" not in out  # no reference column
    with netCDF4.Dataset(tmp_path / "grid32.nc") as ds:
        u32 = np.asarray(ds["u"][:])
        assert ds.getncattr("interface_points").endswith("upper side")
    # solution.nc is made in the case's float32 by the same rule: the same to rounding
    np.testing.assert_allclose(u32, sol["fields"]["u"].ravel(), rtol=0, atol=1e-6)
    # the default float64 evaluation of the same float32 parameters
    summary(eval_serial(run, "--points", path, "--quiet", "--out", tmp_path / "grid64.csv"))
    np.testing.assert_allclose(read_csv(tmp_path / "grid64.csv")["u"],
                               sol["fields"]["u"].ravel(), rtol=0, atol=1e-6)


def test_grid_output_is_a_solution_file(run):
    out = summary(eval_mpi(2, run, "--grid", "11,11", "--derivatives", "--quiet"))
    path = run / "eval_grid_11x11.nc"
    assert out["out"] == str(path) and out["points"] == 121
    assert set(out["errors"]) == {"l2_u", "max_abs_u"}  # against the exact solution
    with netCDF4.Dataset(path) as ds:
        assert ds["u"].dimensions == ("x", "y") and ds["u"].shape == (11, 11)
        assert ds["u_x"].shape == (11, 11) and "u_error" in ds.variables
        assert ds.getncattr("l2_u") == pytest.approx(out["errors"]["l2_u"])
    got, sol = read_solution(path), read_solution(run / "solution.nc")
    np.testing.assert_array_equal(got["axes"]["x"], sol["axes"]["x"])
    np.testing.assert_allclose(got["fields"]["u"], sol["fields"]["u"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["errors"]["u"], sol["errors"]["u"], rtol=0, atol=1e-6)
    assert out["errors"]["l2_u"] == pytest.approx(sol["attrs"]["l2_u"], rel=1e-5)


def test_netcdf_points_in_and_out(run, scattered, serial, tmp_path):
    _, pts = scattered
    path = tmp_path / "nodes.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("node", len(pts))
        for k, name in enumerate(("x", "y")):
            ds.createVariable(name, "f8", ("node",))[:] = pts[:, k]
    out = summary(eval_mpi(4, run, "--points", path, "--quiet", "--out", tmp_path / "o.nc"))
    assert "errors" not in out
    with netCDF4.Dataset(tmp_path / "o.nc") as ds:
        u = np.asarray(ds["u"][:])
    np.testing.assert_allclose(u, serial[1]["u"], rtol=1e-12,
                               atol=1e-14)


def one_error(proc, *words) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


BAD = {
    "nan": ("x,y\n0.1,0.2\n0.3,nan\n", ["column 'y' has 1 missing, NaN", "line 3"]),
    "no_y": ("x,u\n0.1,0.2\n", ["has no column 'y'"]),
    "outside": ("x,y\n0.1,0.2\n1.5,0.5\n0.5,-2\n",
                ["2 of 3 points lie outside the domain [0, 1] x [0, 1]", "x=1.5, y=0.5"]),
    "text": ("x,y\n0.1,abc\n", ["'abc' is not a number"]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_points_file_ends_every_rank_with_one_message(run, tmp_path, name):
    text, words = BAD[name]
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    one_error(eval_mpi(2, run, "--points", path), str(path), *words)
    assert not (run / f"eval_{name}.csv").exists()


def test_bad_arguments_and_run_directories(run, tmp_path):
    one_error(eval_mpi(2, run, "--grid", "11,11,11"), "has 3 entries", "2 axes (x, y)")
    one_error(eval_mpi(2, run, "--points", tmp_path / "missing.csv"),
              "cannot read points file", "No such file")
    empty = tmp_path / "norun"
    empty.mkdir()
    (empty / "config.toml").write_text((run / "config.toml").read_text())
    one_error(eval_mpi(2, empty, "--grid", "5,5"), "has no checkpoint")
    # without mpiexec as well
    one_error(eval_serial(tmp_path / "nowhere", "--grid", "5,5"), "is not a run directory")
    one_error(eval_serial(run, "--grid", "5,5", "--out", tmp_path / "out.txt"),
              "use the extension .csv or .nc")


def test_grid_errors_against_a_computed_reference(tmp_path):
    """Burgers has no closed form: ``--grid`` scores against its Cole-Hopf reference, as the
    run's own evaluation does on the same grid."""
    out = tmp_path / "burgers"
    check(run_case(1, ROOT / "cases" / "burgers1d.toml", out, "stages.0.steps=5",
                   "stages.1.steps=0", "network.width=8", "points.interior=100",
                   "output.grid=[21, 11]", "output.checkpoint_every=5",
                   "case.dtype=\"float64\"")[0])
    got = summary(eval_serial(out, "--grid", "21,11", "--quiet"))
    run_errors = json.loads((out / "errors.json").read_text())
    assert set(got["errors"]) == {"l2_u", "max_abs_u"}
    assert got["errors"]["l2_u"] == pytest.approx(run_errors["l2_u"], rel=1e-9)

"""Solutions of non-box domains: the grid masked outside the domain in solution.nc, errors
measured inside only, plots with the domain's outline."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import netCDF4  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ddpinn.geometry import Difference, Disk, Rectangle  # noqa: E402
from ddpinn.io.netcdf import MASK_ATTR, read_solution, write_solution  # noqa: E402
from ddpinn.io.plots import plot_run  # noqa: E402
from ddpinn.training import evaluate as ev  # noqa: E402


def holed_grid():
    """A 21 x 11 grid of [0, 2] x [0, 1] with a disk of radius 0.3 at (1, 0.5) cut out."""
    shape = Difference(Rectangle([0.0, 0.0], [2.0, 1.0]), Disk([1.0, 0.5], 0.3))
    axes = [np.linspace(0.0, 2.0, 21), np.linspace(0.0, 1.0, 11)]
    X, Y = np.meshgrid(*axes, indexing="ij")
    inside = shape.inside(np.stack([X.ravel(), Y.ravel()], axis=1)).reshape(X.shape)
    return shape, axes, X, Y, inside


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_masked_solution_round_trip(tmp_path, dtype):
    _, axes, X, Y, inside = holed_grid()
    assert 0 < inside.sum() < inside.size
    fields = {"u": np.sin(X) * Y, "p": np.where(inside, X - Y, np.nan)}
    path = tmp_path / "solution.nc"
    write_solution(path, ("x", "y"), axes, fields, errors={"u": 1e-3 * X}, dtype=dtype,
                   mask=inside, attrs={"l2_u": 1e-3})
    with netCDF4.Dataset(path) as ds:  # what CF tools see: _FillValue outside, masked
        assert ds.Conventions == "CF-1.8" and MASK_ATTR in ds.ncattrs()
        for name in ("u", "p", "u_error"):
            var = ds[name]
            assert "_FillValue" in var.ncattrs()
            data = var[:]
            assert isinstance(data, np.ma.MaskedArray)
            np.testing.assert_array_equal(np.ma.getmaskarray(data), ~inside)
            assert np.isfinite(data.compressed()).all()
        assert ds["u"].ancillary_variables == "u_error"
    sol = read_solution(path)
    for name, arr in (("u", sol["fields"]["u"]), ("p", sol["fields"]["p"]),
                      ("u_error", sol["errors"]["u"])):
        assert np.isnan(arr[~inside]).all(), name
        assert np.isfinite(arr[inside]).all(), name
    tol = 1e-6 if dtype == "float32" else 0.0
    np.testing.assert_allclose(sol["fields"]["u"][inside], fields["u"][inside], rtol=tol)


def test_a_box_solution_has_no_fill_value(tmp_path):
    _, axes, X, Y, _ = holed_grid()
    write_solution(tmp_path / "s.nc", ("x", "y"), axes, {"u": X})
    with netCDF4.Dataset(tmp_path / "s.nc") as ds:
        assert "_FillValue" not in ds["u"].ncattrs() and MASK_ATTR not in ds.ncattrs()


def test_mask_of_the_wrong_shape_is_refused(tmp_path):
    _, axes, X, _, inside = holed_grid()
    with pytest.raises(ValueError, match="mask has shape"):
        write_solution(tmp_path / "s.nc", ("x", "y"), axes, {"u": X}, mask=inside[:, :3])
    assert not (tmp_path / "s.nc").exists()


def test_plots_of_a_masked_solution(tmp_path):
    _, axes, X, Y, inside = holed_grid()
    write_solution(tmp_path / "solution.nc", ("x", "y"), axes, {"u": X + Y},
                   errors={"u": 1e-3 * (X - 1)}, mask=inside)
    paths = plot_run(tmp_path)
    assert sorted(p.name for p in paths) == ["error_u.png", "solution_u.png"]


class FakeSolver:
    """predict() of a closed-form field that refuses points outside the domain."""

    def __init__(self, shape, time_axis=None):
        self.shape, self.pde = shape, SimpleNamespace(outputs=("u",), gauge_outputs=(),
                                                       error_groups={})
        self.problem = SimpleNamespace(time_axis=time_axis)
        self.calls = []

    def predict(self, points):
        assert self.shape.inside(points[:, :2]).all(), "a point outside the domain"
        self.calls.append(len(points))
        return (points[:, 0] + 1.0)[:, None]


def test_errors_are_measured_inside_only():
    shape, axes, X, Y, inside = holed_grid()
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    truth = (pts[:, 0] + 1.0)[:, None].copy()
    truth[~inside.ravel()] = 1e6  # outside values must not count
    grid = ev.TestGrid(axes, pts, truth, "exact", inside=inside.ravel())
    solver = FakeSolver(shape)
    pred, errors = ev.evaluate(solver, grid)
    assert solver.calls == [int(inside.sum())]
    assert np.isnan(pred[~inside.ravel()]).all()
    np.testing.assert_allclose(pred[inside.ravel(), 0], pts[inside.ravel(), 0] + 1.0)
    assert errors["l2_u"] == 0.0


def test_a_box_grid_is_evaluated_everywhere():
    _, axes, X, Y, _ = holed_grid()
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    solver = FakeSolver(SimpleNamespace(inside=lambda x: np.ones(len(x), bool)))
    grid = ev.TestGrid(axes, pts, (pts[:, 0] + 1.0)[:, None], "exact")
    pred, errors = ev.evaluate(solver, grid)
    assert solver.calls == [len(pts)] and np.isfinite(pred).all() and errors["l2_u"] == 0.0

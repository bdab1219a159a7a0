"""ddpinn eval without MPI: which subdomain a point belongs to (interface points take the
upper side, on any partition), points files in and out, errors against references."""
from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch

from ddpinn.decomposition import decompose, owned_sids, partition
from ddpinn.decomposition.locate import cell_edges, locate, locate_points, outside
from ddpinn.eval_experts import MIN_CHUNK, expert_values, outputs, with_derivatives
from ddpinn.evaluation import parse_grid, point_errors
from ddpinn.geometry import Box
from ddpinn.io.config import load
from ddpinn.io.points_file import PointsFileError, read_points, write_points
from ddpinn.pdes import PDES
from ddpinn.problem import build_problem
from ddpinn.training.solver import make_experts

ROOT = Path(__file__).resolve().parents[2]


def box3():
    """[0, 1] x [0, 1.5] cut 3 x 2: inner edges 1/3, 2/3 (not exact in binary) and 0.75."""
    return decompose(Box((0.0, 0.0), (1.0, 1.5), ("x", "y")), [3, 2])


def containing(points, d):
    """Brute force: the sids whose closed box holds each point, as a list of sets."""
    return [set(np.flatnonzero(np.all((p >= d.lower) & (p <= d.upper), axis=1)).tolist())
            for p in points]


# -- point -> subdomain ----------------------------------------------------------------------
def test_interior_points_go_to_the_cell_that_holds_them():
    d = box3()
    pts = np.random.default_rng(0).random((500, 2)) * [1.0, 1.5]
    sid = locate(pts, d)
    for p, s, holders in zip(pts, sid, containing(pts, d)):
        assert s in holders, (p, s, holders)
    assert set(sid.tolist()) == set(range(6))


def test_interface_points_take_the_upper_side():
    d = box3()
    x_edges, y_edges = cell_edges(d)
    np.testing.assert_array_equal(x_edges, d.lower[[2, 4], 0])  # the stored bounds exactly
    np.testing.assert_array_equal(y_edges, [0.75])
    on_x = np.array([[x_edges[0], 0.2], [x_edges[1], 1.0]])  # x = 1/3 and 2/3
    # (cells: sid = 2 * i_x + i_y) the cell above the interface along x
    np.testing.assert_array_equal(locate(on_x, d), [2, 5])
    np.testing.assert_array_equal(locate(np.array([[0.1, 0.75], [0.9, 0.75]]), d), [1, 5])
    # a corner of four cells: the upper side along both axes, the largest of their sids
    corner = np.array([[x_edges[0], 0.75]])
    assert containing(corner, d)[0] == {0, 1, 2, 3}
    np.testing.assert_array_equal(locate(corner, d), [3])
    # one ulp below an interface: the lower side
    below = np.array([[np.nextafter(x_edges[0], -np.inf), 0.2],
                      [0.1, np.nextafter(0.75, -np.inf)]])
    np.testing.assert_array_equal(locate(below, d), [0, 0])


def test_every_interface_point_of_the_decomposition_takes_its_upper_subdomain():
    d = decompose(Box((-1.0, 0.0, 0.0), (2.0, 0.7, 1.0), ("x", "y", "t")), [3, 5, 7])
    for itf in d.interfaces:
        mid = (d.lower[itf.lower] + d.upper[itf.lower]) / 2
        mid[itf.axis] = d.upper[itf.lower, itf.axis]
        assert locate(mid[None], d)[0] == itf.upper


def test_boundary_points_and_outside():
    d = box3()
    pts = np.array([[0.0, 0.0], [1.0, 1.5], [1.0, 0.0], [0.0, 1.5]])
    np.testing.assert_array_equal(locate(pts, d), [0, 5, 4, 1])
    assert not outside(pts, (0, 0), (1, 1.5)).any()
    near = np.array([[1.0 + 1e-12, 0.5], [-1e-12, 0.5]])  # within the tolerance
    assert not outside(near, (0, 0), (1, 1.5)).any()
    np.testing.assert_array_equal(locate(near, d), [4, 0])
    far = np.array([[1.001, 0.5], [0.5, -0.1], [0.5, 0.5]])
    np.testing.assert_array_equal(outside(far, (0, 0), (1, 1.5)), [True, True, False])


def test_locate_points_checks_shapes():
    with pytest.raises(ValueError, match=r"shape \(P, 2\)"):
        locate_points(np.zeros((3, 3)), [np.array([0.5]), np.array([0.5])], (2, 2))
    assert locate_points(np.zeros((0, 2)), [np.array([0.5])] * 2, (2, 2)).shape == (0,)


@pytest.fixture(scope="module")
def problem():
    cfg = load(ROOT / "cases" / "poisson2d.toml",
               ["decomposition.grid=[3, 2]", "network.width=8", "case.dtype=\"float64\""])
    return build_problem(cfg)


def evaluate_on(problem, owner, n_ranks, points, fn, n_values):
    """What the ranks of a partition compute together (RankExperts.predict without MPI)."""
    d = problem.decomposition
    sid_of = locate(points, d)
    width = int(np.bincount(sid_of).max())
    out = np.full((len(points), n_values), np.nan)
    for rank in range(n_ranks):
        sids = owned_sids(owner, rank)
        mine = np.flatnonzero(np.isin(sid_of, sids))
        if not len(mine):
            continue
        model = make_experts(problem, sids)
        out[mine] = expert_values(model, sids, points[mine], sid_of[mine], fn, n_values,
                                  torch.float64, torch.device("cpu"), width, MIN_CHUNK)
    return out


def test_values_do_not_depend_on_the_partition(problem):
    d = problem.decomposition
    x_edges, y_edges = cell_edges(d)
    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.random((300, 2)),
                          [[x_edges[0], 0.3], [x_edges[1], y_edges[0]], [0.5, y_edges[0]]]])
    reference = evaluate_on(problem, partition(d.grid, 1), 1, pts, with_derivatives, 3)
    assert np.isfinite(reference).all()
    for n in (2, 3, 4, 6):  # chunks of MIN_CHUNK points: several batches per expert
        got = evaluate_on(problem, partition(d.grid, n), n, pts, with_derivatives, 3)
        # the same to a few ulps (vectorised kernels round the tail of a batch differently)
        np.testing.assert_allclose(got, reference, rtol=1e-13, atol=1e-14)
    # an interface point is the value of the expert above it, not the one below
    sid_up = locate(pts[-3:-2], d)[0]
    model = make_experts(problem, [sid_up - 2, sid_up])
    both = outputs(model, torch.as_tensor(np.repeat(pts[None, -3], 2, 0)[:, None])).numpy()
    assert reference[-3, 0] == pytest.approx(both[1, 0, 0], abs=1e-14)
    assert abs(both[0, 0, 0] - both[1, 0, 0]) > 1e-6


def test_derivatives_match_finite_differences(problem):
    model = make_experts(problem, [0, 4])
    x = torch.tensor([[[0.1, 0.2], [0.3, 0.1]], [[0.8, 1.2], [0.9, 1.4]]], dtype=torch.float64)
    got = with_derivatives(model, x).numpy()  # u, u_x, u_y
    h = 1e-6
    for a in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[a] = h
        fd = (outputs(model, x + step) - outputs(model, x - step)).numpy()[..., 0] / (2 * h)
        np.testing.assert_allclose(got[..., 1 + a], fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(got[..., 0], outputs(model, x).numpy()[..., 0])


# -- points files ----------------------------------------------------------------------------
def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_points_with_references_comments_and_extra_columns(tmp_path):
    path = write(tmp_path, "p.csv", "# scattered nodes\n label , y, x ,u\n\na,0.5,0.25,1.5\n"
                                    "b, 1e-3 ,0.75,-2\n")
    pts = read_points(path, ("x", "y"), ("u", "v"))
    np.testing.assert_array_equal(pts.points, [[0.25, 0.5], [0.75, 1e-3]])
    assert list(pts.reference) == ["u"]
    np.testing.assert_array_equal(pts.reference["u"], [1.5, -2.0])


@pytest.mark.parametrize("text, message", [
    ("x,z\n0.1,0.2\n", r"has no column 'y' \(the case's axes are x, y; found 'x'\)"),
    ("x,y\n0.1,0.2\nnan,0.3\n0.2,nan\n",
     r"column 'x' has 1 missing, NaN or infinite value, the first on line 3"),
    ("x,y,u\n0.1,0.2,1\n0.1,0.3,\n", r"column 'u' has 1 missing.* on line 3"),
    ("x,y\n0.1,0.2\n0.1,inf\n", r"column 'y' has 1 missing, NaN or infinite"),
    ("x,y\n0.1,zero\n", r"line 2, column 'y': 'zero' is not a number"),
    ("x,y\n0.1,0.2,0.3\n", r"line 2 has 3 values but the header names 2 columns"),
    ("x,y,x\n0.1,0.2,0.3\n", r"column 'x' appears twice"),
    ("x,y\n", r"holds no points"),
    ("\n# nothing\n", r"is empty"),
])
def test_bad_csv_gets_one_message(tmp_path, text, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(PointsFileError, match=message) as info:
        read_points(path, ("x", "y"), ("u",))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_or_binary_file(tmp_path):
    with pytest.raises(PointsFileError, match="cannot read points file .*No such file"):
        read_points(tmp_path / "nope.csv", ("x",))
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(PointsFileError, match="cannot read points file"):
        read_points(path, ("x",))


def nc_file(path, variables, dims=None):
    with netCDF4.Dataset(path, "w") as ds:
        for name, values in variables.items():
            values = np.asarray(values, float)
            dim = (dims or {}).get(name) or (f"n{len(values)}",)
            for k, n in zip(dim, values.shape):
                if k not in ds.dimensions:
                    ds.createDimension(k, n)
            var = ds.createVariable(name, "f8", dim, fill_value=-9999.0)
            var[:] = values
    return path


def test_netcdf_points(tmp_path):
    path = nc_file(tmp_path / "p.nc", {"t": [0.0, 1.0, 2.0], "x": [0.5, 0.25, 0.0],
                                       "u": [1.0, 2.0, 3.0], "other": [7.0]})
    pts = read_points(path, ("x", "t"), ("u",))
    np.testing.assert_array_equal(pts.points, [[0.5, 0.0], [0.25, 1.0], [0.0, 2.0]])
    np.testing.assert_array_equal(pts.reference["u"], [1.0, 2.0, 3.0])


def test_bad_netcdf_points(tmp_path):
    path = nc_file(tmp_path / "a.nc", {"x": [0.5, 0.25], "t": [0.0]})
    with pytest.raises(PointsFileError, match=r"different lengths \(x: 2, t: 1\)"):
        read_points(path, ("x", "t"))
    path = nc_file(tmp_path / "b.nc", {"x": [[0.5, 0.25]]}, {"x": ("a", "b")})
    with pytest.raises(PointsFileError, match=r"variable 'x' has dimensions \('a', 'b'\)"):
        read_points(path, ("x",))
    path = nc_file(tmp_path / "c.nc", {"x": [0.5, -9999.0]})  # a fill value: missing
    with pytest.raises(PointsFileError, match=r"column 'x' has 1 missing.* at index 1"):
        read_points(path, ("x",))
    path = nc_file(tmp_path / "d.nc", {"x": [0.5]})
    with pytest.raises(PointsFileError, match=r"has no column 't'"):
        read_points(path, ("x", "t"))


def test_written_points_read_back_exactly(tmp_path):
    rng = np.random.default_rng(2)
    cols = {"x": rng.random(7), "y": rng.random(7) * 1e-9, "u": rng.standard_normal(7)}
    for name in ("o.csv", "o.nc"):
        write_points(tmp_path / name, cols, {"l2_u": 0.5})
        back = read_points(tmp_path / name, ("x", "y"), ("u",))
        np.testing.assert_array_equal(back.points, np.stack([cols["x"], cols["y"]], 1))
        np.testing.assert_array_equal(back.reference["u"], cols["u"])
    with netCDF4.Dataset(tmp_path / "o.nc") as ds:
        assert ds.getncattr("l2_u") == 0.5
    with pytest.raises(PointsFileError, match="use the extension .csv or .nc"):
        write_points(tmp_path / "o.txt", cols)


# -- errors and arguments --------------------------------------------------------------------
def test_point_errors_and_the_pressure_gauge():
    pde = PDES["taylor_green"](3)
    rng = np.random.default_rng(3)
    times = np.repeat([0.0, 1.0], 20)
    ref = {n: rng.standard_normal(40) for n in ("u", "v", "w", "p")}
    pred = {n: v.copy() for n, v in ref.items()}
    pred["u"][5] += 0.25
    pred["p"] += 0.3 + 2.0 * times  # p + c(t): the same flow
    diff, err = point_errors(pde, pred, ref, times)
    assert err["max_abs_u"] == pytest.approx(0.25)
    assert err["l2_u"] == pytest.approx(0.25 / np.linalg.norm(ref["u"]))
    assert err["l2_p"] < 1e-14 and err["max_abs_p"] < 1e-14
    assert err["l2_v"] == 0.0 and "l2_velocity" in err
    assert np.abs(diff["u"]).argmax() == 5
    # every time value once: one constant over all points (a per-time mean would hide errors)
    _, err = point_errors(pde, pred, ref, np.linspace(0, 1, 40))
    assert err["l2_p"] > 0.1
    _, err = point_errors(pde, {"u": pred["u"]}, {"u": ref["u"]})
    assert set(err) == {"l2_u", "max_abs_u"}  # no group without all its outputs


@pytest.mark.parametrize("text, message", [
    ("11", "has 1 entry but the case has 2 axes"), ("3,4,5", "has 3 entries"),
    ("3,a", "give integers"), ("3,1", "2 points at least")])
def test_parse_grid(text, message):
    assert parse_grid("3, 4", ("x", "y")) == [3, 4]
    with pytest.raises(ValueError, match=message):
        parse_grid(text, ("x", "y"))

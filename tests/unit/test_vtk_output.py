"""Outputs for other tools: VTK files for ParaView (``output.vtk``), the solution at a
reference's scattered points (``solution_at_reference.nc``) and probe time series
(``probes.nc``)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pytest

from ddpinn.geometry import Box, Difference, Disk, Rectangle
from ddpinn.io import vtk as vtk_output
from ddpinn.io.config import ConfigError, load
from ddpinn.io.probes import read_probe_series, write_probe_series
from ddpinn.quantities_of_interest import check_quantities, parse_quantities
from ddpinn.quantities_of_interest.compute import QuantityEvaluator
from ddpinn.training import evaluate as evaluation

ROOT = Path(__file__).resolve().parents[2]


def grid_values(axes, funcs):
    """(P, m) values of ``funcs`` (mesh arrays -> array) on the tensor grid, C order."""
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([f(*mesh).ravel() for f in funcs], axis=1)


def read_vti(path):
    """(image data, {array name: ndarray in VTK order}) of a .vti file."""
    vtk = pytest.importorskip("vtk")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    data = reader.GetOutput()
    pd = data.GetPointData()
    arrays = {pd.GetArrayName(i): vtk_to_numpy(pd.GetArray(i))
              for i in range(pd.GetNumberOfArrays())}
    return data, arrays


def vtk_points(data):
    """The points of a VTK data set as (N, 3), in its point order."""
    return np.array([data.GetPoint(i) for i in range(data.GetNumberOfPoints())])


def test_space_grid_is_image_data_with_origin_spacing_and_values(tmp_path):
    pytest.importorskip("vtk")
    axes = [np.linspace(-1.0, 1.0, 5), np.linspace(0.5, 2.0, 4)]
    f = (lambda x, y: np.sin(x) + 3 * y, lambda x, y: x * y)
    paths = vtk_output.write_vtk(tmp_path, ("x", "y"), axes, ("u", "p"),
                                 grid_values(axes, f), None, None)
    assert paths == [tmp_path / "solution.vti"]
    data, arrays = read_vti(paths[0])
    assert data.GetDimensions() == (5, 4, 1)
    np.testing.assert_allclose(data.GetOrigin(), (-1.0, 0.5, 0.0))
    np.testing.assert_allclose(data.GetSpacing(), (0.5, 0.5, 1.0))
    assert set(arrays) == {"u", "p"} and arrays["u"].dtype == np.float64
    pts = vtk_points(data)
    np.testing.assert_allclose(arrays["u"], f[0](pts[:, 0], pts[:, 1]), rtol=1e-14)
    np.testing.assert_allclose(arrays["p"], f[1](pts[:, 0], pts[:, 1]), rtol=1e-14)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind


def test_space_time_grid_is_a_pvd_collection_of_one_file_per_time(tmp_path):
    pytest.importorskip("vtk")
    axes = [np.linspace(0.0, 1.0, 6), np.linspace(0.0, 2.0, 3), np.array([0.0, 0.25, 1.0])]
    f = (lambda x, y, t: x + 10 * y + 100 * t,)
    paths = vtk_output.write_vtk(tmp_path, ("x", "y", "t"), axes, ("u",),
                                 grid_values(axes, f), 2, None)
    pvd = tmp_path / "solution.pvd"
    assert paths[0] == pvd and len(paths) == 4
    root = ET.parse(pvd).getroot()
    assert root.get("type") == "Collection"
    entries = [(float(d.get("timestep")), d.get("file")) for d in root.iter("DataSet")]
    assert entries == [(t, f"vtk/solution_{k:04d}.vti") for k, t in enumerate(axes[2])]
    for t, rel in entries:
        data, arrays = read_vti(tmp_path / rel)
        assert data.GetDimensions() == (6, 3, 1)
        np.testing.assert_allclose(data.GetSpacing()[:2], (0.2, 1.0))
        pts = vtk_points(data)
        np.testing.assert_allclose(arrays["u"], f[0](pts[:, 0], pts[:, 1], t), rtol=1e-14)
        stamp = data.GetFieldData().GetArray("TimeValue")
        assert stamp.GetValue(0) == t
    # a shorter series in the same directory leaves no stale file behind
    short = [axes[0], axes[1], axes[2][:2]]
    vtk_output.write_vtk(tmp_path, ("x", "y", "t"), short, ("u",), grid_values(short, f), 2)
    assert sorted(p.name for p in (tmp_path / "vtk").iterdir()) == \
        ["solution_0000.vti", "solution_0001.vti"]


def test_masked_points_are_nan_and_hidden(tmp_path):
    vtk = pytest.importorskip("vtk")
    shape = Difference(Rectangle([0.0, 0.0], [2.0, 1.0]), Disk([1.0, 0.5], 0.3))
    axes = [np.linspace(0.0, 2.0, 21), np.linspace(0.0, 1.0, 11)]
    pts = grid_values(axes, (lambda x, y: x, lambda x, y: y))
    inside = shape.inside(pts)
    assert 0 < inside.sum() < len(inside)
    values = np.where(inside, pts[:, 0] * pts[:, 1], 7.0)[:, None]  # not NaN outside yet
    (path,) = vtk_output.write_vtk(tmp_path, ("x", "y"), axes, ("u",), values, None, inside)
    data, arrays = read_vti(path)
    vpts = vtk_points(data)
    mine = shape.inside(vpts[:, :2])
    assert np.isnan(arrays["u"][~mine]).all()
    np.testing.assert_allclose(arrays["u"][mine], vpts[mine, 0] * vpts[mine, 1], rtol=1e-14)
    ghost = arrays["vtkGhostType"]
    assert ghost.dtype == np.uint8
    np.testing.assert_array_equal(ghost, np.where(mine, 0, vtk.vtkDataSetAttributes.HIDDENPOINT))
    np.testing.assert_array_equal(arrays["inside"], mine.astype(np.uint8))


def test_uneven_axis_is_a_rectilinear_grid_and_1d_has_one_point_across(tmp_path):
    vtk = pytest.importorskip("vtk")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    x = np.array([0.0, 0.1, 0.3, 0.7, 1.5])
    (path,) = vtk_output.write_vtk(tmp_path, ("x",), [x], ("u",), (x ** 2)[:, None])
    assert path.name == "solution.vtr"
    reader = vtk.vtkXMLRectilinearGridReader()
    reader.SetFileName(str(path))
    reader.Update()
    data = reader.GetOutput()
    assert data.GetDimensions() == (5, 1, 1)
    np.testing.assert_array_equal(vtk_to_numpy(data.GetXCoordinates()), x)
    np.testing.assert_array_equal(vtk_to_numpy(data.GetPointData().GetArray("u")), x ** 2)


def test_bad_shapes_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="values have shape"):
        vtk_output.write_vtk(tmp_path, ("x",), [np.arange(4.0)], ("u",), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="1 to 3 space axes"):
        vtk_output.write_vtk(tmp_path, "xyzw", [np.arange(2.0)] * 4, ("u",), np.zeros((16, 1)))
    assert not list(tmp_path.iterdir())


def test_output_vtk_needs_the_vtk_package(monkeypatch):
    case = ROOT / "cases" / "poisson2d.toml"
    monkeypatch.setattr(vtk_output, "vtk_available", lambda: False)
    with pytest.raises(ConfigError) as err:
        load(case, ["output.vtk=true"])
    assert str(err.value) == \
        "field 'output.vtk' = true needs the vtk package: pip install 'ddpinn[vtk]'"
    assert load(case).output.vtk is False  # off by default: no vtk needed
    monkeypatch.setattr(vtk_output, "vtk_available", lambda: True)
    assert load(case, ["output.vtk=true"]).output.vtk is True


# ----------------------------------------------------------------- probe time series (1D+t)

def heat_problem():
    pde = SimpleNamespace(outputs=("u", "q"), n_out=2, params={}, name="heat")
    return SimpleNamespace(pde=pde, box=Box((0.0, 0.0), (1.0, 2.0), ("x", "t")), time_axis=1,
                           shape=None)


def field(points):
    """u = x + 10 t, q = x t at points (P, 2) of (x, t)."""
    x, t = points[:, 0], points[:, 1]
    return np.stack([x + 10 * t, x * t], axis=1)


def test_a_probe_without_time_is_a_time_series(tmp_path):
    problem = heat_problem()
    q = parse_quantities(SimpleNamespace(forces=[], probes={"mid": [0.5], "left": [0.1],
                                                            "at": [0.3, 1.0]},
                                         probe_differences={"d": ["u", "mid", "at"]}))
    check_quantities(q, problem.pde, problem.box, None, problem.time_axis)
    times = np.linspace(0.0, 2.0, 5)
    ev = QuantityEvaluator(q, problem, times)
    assert ev.series_names == ["mid", "left"]
    values = ev.values(field)  # time series: the value at the last time
    assert values["mid_u"] == pytest.approx(0.5 + 20.0) and values["left_q"] == pytest.approx(0.2)
    assert values["at_u"] == pytest.approx(10.3) and values["d"] == pytest.approx(20.5 - 10.3)
    series = ev.series(field)
    np.testing.assert_array_equal(series.times, times)
    np.testing.assert_allclose(series.values[0, :, 0], 0.5 + 10 * times)
    np.testing.assert_allclose(series.values[1, :, 1], 0.1 * times)
    assert ev.series(lambda pts: None) is None  # not rank 0
    path = tmp_path / "probes.nc"
    write_probe_series(path, series, ["x"], problem.pde.outputs, {"case": "heat"})
    back = read_probe_series(path)
    assert back["names"] == ["mid", "left"] and back["attrs"]["featureType"] == "timeSeries"
    np.testing.assert_array_equal(back["space"]["x"], [0.5, 0.1])
    np.testing.assert_array_equal(back["times"], times)
    np.testing.assert_array_equal(back["values"]["u"], series.values[:, :, 0])
    with netCDF4.Dataset(path) as ds:
        assert ds["u"].dimensions == ("probe", "time") and ds["x"].dimensions == ("probe",)
    # without times: the end of the interval alone; no time-series probe: no series
    assert QuantityEvaluator(q, problem).values(field)["mid_u"] == pytest.approx(20.5)
    full = parse_quantities(SimpleNamespace(forces=[], probes={"at": [0.3, 1.0]},
                                            probe_differences={}))
    assert QuantityEvaluator(full, problem, times).series(field) is None


@pytest.mark.parametrize("probe, message", [
    ([0.5, 0.5, 0.5], "needs one coordinate per axis (x, t), or one per space axis (x) for a "
                      "time series"),
    ([1.5], "lies outside the domain"),
    ([0.5, 3.0], "lies outside the domain"),
])
def test_probe_coordinates_are_checked(probe, message):
    problem = heat_problem()
    q = parse_quantities(SimpleNamespace(forces=[], probes={"p1": probe},
                                         probe_differences={}))
    with pytest.raises(ConfigError, match="output.probes.p1") as err:
        check_quantities(q, problem.pde, problem.box, None, problem.time_axis)
    assert message in str(err.value)


def test_a_space_only_case_has_no_time_series():
    pde = SimpleNamespace(outputs=("u",), n_out=1, params={}, name="poisson")
    box = Box((0.0, 0.0), (1.0, 1.0), ("x", "y"))
    q = parse_quantities(SimpleNamespace(forces=[], probes={"p": [0.5]}, probe_differences={}))
    with pytest.raises(ConfigError, match=r"'output.probes.p' = \[0.5\] needs one coordinate "
                                          r"per axis \(x, y\)$"):
        check_quantities(q, pde, box, None, None)


# ------------------------------------------------------------ solution at reference points

def test_solution_at_reference_points(tmp_path):
    """evaluate_all gives the prediction at the scattered points (errors as evaluate's);
    write_extra_outputs writes it with the reference and the error, probes.nc and VTK."""
    from ddpinn.run import REFERENCE_POINTS_FILE, write_extra_outputs

    pde = SimpleNamespace(outputs=("u", "q"), n_out=2, gauge_outputs=(), error_groups={})
    problem = SimpleNamespace(pde=pde, box=Box((0.0, 0.0), (1.0, 2.0), ("x", "t")),
                              time_axis=1)
    axes = [np.linspace(0.0, 1.0, 5), np.linspace(0.0, 2.0, 3)]
    points = grid_values(axes, (lambda x, t: x, lambda x, t: t))
    scattered = np.array([[0.1, 0.3], [0.7, 1.9], [0.45, 1.0]])
    truth = field(scattered) + 0.01
    grid = evaluation.TestGrid(axes, points, truth, "ref.nc", scattered)
    solver = SimpleNamespace(predict=field, pde=pde, problem=problem)
    result = evaluation.evaluate_all(solver, grid)
    np.testing.assert_array_equal(result.at_reference, field(scattered))
    np.testing.assert_array_equal(result.pred, field(points))
    pred, errors = evaluation.evaluate(solver, grid)
    assert errors == result.errors and set(errors) == {"l2_u", "l2_q"}
    cfg = SimpleNamespace(output=SimpleNamespace(vtk=vtk_output.vtk_available()))
    ev = QuantityEvaluator(parse_quantities(SimpleNamespace(
        forces=[], probes={"mid": [0.5]}, probe_differences={})), problem, axes[1])
    written = write_extra_outputs(cfg, problem, grid, pred, tmp_path, {"case": "c", **errors},
                                  result.at_reference, ev.series(field))
    assert written[:2] == [tmp_path / REFERENCE_POINTS_FILE, tmp_path / "probes.nc"]
    with netCDF4.Dataset(tmp_path / REFERENCE_POINTS_FILE) as ds:
        assert list(ds.dimensions) == ["point"] and ds.case == "c"
        assert list(ds.variables) == ["x", "t", "u", "u_reference", "u_error", "q",
                                      "q_reference", "q_error"]
        np.testing.assert_array_equal(ds["t"][:], scattered[:, 1])
        np.testing.assert_array_equal(ds["q"][:], field(scattered)[:, 1])
        np.testing.assert_array_equal(ds["u_reference"][:], truth[:, 0])
        np.testing.assert_allclose(ds["u_error"][:], -0.01, rtol=1e-12)
    if cfg.output.vtk:
        assert (tmp_path / "solution.pvd").is_file() and len(written) == 2 + 1 + 3
    # without scattered points (a grid reference) there is no prediction there
    grid_ref = evaluation.TestGrid(axes, points, field(points), "exact")
    assert evaluation.evaluate_all(solver, grid_ref).at_reference is None
    assert write_extra_outputs(SimpleNamespace(output=SimpleNamespace(vtk=False)), problem,
                               grid_ref, pred, tmp_path / "x", {}) == []


def test_overwrite_moves_the_new_outputs_aside(tmp_path):
    """--overwrite moves a run's files: the VTK files, probes.nc and the reference points."""
    from ddpinn.io.rundir import run_outputs

    (tmp_path / "vtk").mkdir()
    names = ["solution.pvd", "solution.vti", "probes.nc", "solution_at_reference.nc",
             "vtk/solution_0000.vti", "vtk/solution_0001.vtr", "vtk/mine.vti", "notes.txt"]
    for n in names:
        (tmp_path / n).write_text("")
    assert sorted(map(str, run_outputs(tmp_path, None))) == sorted(names[:6])

"""Round trips and atomicity of ddpinn.io.netcdf."""
import os

import netCDF4
import numpy as np
import pytest

import ddpinn
from ddpinn.io.netcdf import read_solution, write_solution


def _grid(*sizes):
    return [np.linspace(0.0, 1.0 + i, n) for i, n in enumerate(sizes)]


def _temp_files(directory):
    return [p for p in os.listdir(directory) if p.startswith(".") and p.endswith(".tmp")]


def test_round_trip_2d(tmp_path):
    axes = _grid(5, 4)
    X, Y = np.meshgrid(*axes, indexing="ij")
    fields = {"u": np.sin(X) * Y, "p": X + Y}
    errors = {"u": 1e-3 * X}
    path = tmp_path / "solution.nc"
    write_solution(path, ("x", "y"), axes, fields, errors=errors,
                   attrs={"case": "poisson", "steps": 100, "l2_u": 1.5e-3,
                          "grid": [2, 2], "bounds": [0.0, 1.5], "nested": {"a": 1}},
                   units={"x": "m", "u": "m s-1"})

    sol = read_solution(path)
    assert list(sol["axes"]) == ["x", "y"]
    for got, want in zip(sol["axes"].values(), axes):
        np.testing.assert_array_equal(got, want)
    assert set(sol["fields"]) == {"u", "p"}
    np.testing.assert_array_equal(sol["fields"]["u"], fields["u"])
    np.testing.assert_array_equal(sol["fields"]["p"], fields["p"])
    assert set(sol["errors"]) == {"u"}
    np.testing.assert_array_equal(sol["errors"]["u"], errors["u"])
    assert sol["attrs"]["case"] == "poisson"
    assert sol["attrs"]["steps"] == 100
    assert sol["attrs"]["l2_u"] == pytest.approx(1.5e-3)
    assert sol["attrs"]["grid"] == [2, 2]
    assert sol["attrs"]["bounds"] == [0.0, 1.5]
    assert sol["attrs"]["nested"] == "{'a': 1}"  # non-scalar attributes become strings

    # The file itself, read without ddpinn: what other CF tools will see.
    with netCDF4.Dataset(path) as ds:
        assert ds.Conventions == "CF-1.8"
        assert ds.source == f"ddpinn {ddpinn.__version__}"
        assert ds.title and ds.history
        assert ds.case == "poisson"
        assert int(ds.steps) == 100
        assert float(ds.l2_u) == pytest.approx(1.5e-3)
        assert list(ds.dimensions) == ["x", "y"]
        assert ds["x"].axis == "X" and ds["y"].axis == "Y"
        assert ds["x"].units == "m" and ds["y"].units == "1"
        assert ds["x"].long_name == "x coordinate"
        assert ds["u"].units == "m s-1" and ds["p"].units == "1"
        assert ds["u_error"].units == "m s-1"  # an error inherits its field's units
        assert ds["u"].dimensions == ("x", "y")
        assert ds["u"].dtype == np.float64 and ds["x"].dtype == np.float64
        assert ds["u"].filters()["zlib"]
        assert ds["u"].long_name and ds["u_error"].long_name
        assert ds["u"].ancillary_variables == "u_error"
        np.testing.assert_array_equal(ds["u"][:], fields["u"])
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("dtype,kind", [("float32", np.float32), ("float64", np.float64)])
def test_fields_in_the_run_precision(tmp_path, dtype, kind):
    """Fields and errors take the run's precision (f4 or f8) and say so in the global
    ``dtype`` attribute; coordinates stay float64; CF attributes are unchanged."""
    axes = _grid(6)
    u = np.linspace(0.1, 0.7, 6) / 3.0
    path = tmp_path / "solution.nc"
    write_solution(path, ("x",), axes, {"u": u}, errors={"u": u * 1e-3}, dtype=dtype)
    with netCDF4.Dataset(path) as ds:
        assert ds["u"].dtype == kind and ds["u_error"].dtype == kind
        assert ds["x"].dtype == np.float64 and ds.dtype == dtype
        assert ds.Conventions == "CF-1.8" and ds["x"].axis == "X"
    sol = read_solution(path)
    assert sol["attrs"]["dtype"] == dtype
    np.testing.assert_array_equal(sol["fields"]["u"], u.astype(kind).astype(np.float64))
    with pytest.raises(ValueError, match="float16"):
        write_solution(tmp_path / "bad.nc", ("x",), axes, {"u": u}, dtype="float16")
    assert not (tmp_path / "bad.nc").exists()


def test_round_trip_4d_space_time(tmp_path):
    names = ("x", "y", "z", "t")
    axes = _grid(3, 4, 5, 2)
    shape = tuple(len(a) for a in axes)
    rng = np.random.default_rng(0)
    fields = {n: rng.standard_normal(shape) for n in ("u", "v", "w", "p")}
    errors = {"u": np.abs(rng.standard_normal(shape))}
    path = tmp_path / "solution.nc"
    write_solution(path, names, axes, fields, errors=errors, units={"t": "s"})

    sol = read_solution(path)
    assert list(sol["axes"]) == list(names)
    for name in fields:
        np.testing.assert_array_equal(sol["fields"][name], fields[name])
    np.testing.assert_array_equal(sol["errors"]["u"], errors["u"])

    with netCDF4.Dataset(path) as ds:
        assert ds.Conventions == "CF-1.8"
        assert [ds[n].axis for n in names] == ["X", "Y", "Z", "T"]
        assert ds["t"].standard_name == "time"
        assert ds["t"].units == "s"
        assert ds["z"].units == "1" and ds["z"].long_name == "z coordinate"
        assert ds["w"].shape == shape
        assert ds["w"].dimensions == names


def test_overwrite_replaces_file(tmp_path):
    path = tmp_path / "solution.nc"
    axes = _grid(3)
    write_solution(path, ("x",), axes, {"u": np.zeros(3)})
    write_solution(path, ("x",), axes, {"u": np.ones(3)})
    np.testing.assert_array_equal(read_solution(path)["fields"]["u"], np.ones(3))
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("bad", [
    dict(fields={"u": np.zeros((4, 4))}),                       # wrong shape
    dict(fields={"u": np.zeros((3, 2))}, errors={"v": np.zeros((3, 2))}),  # error w/o field
    dict(fields={"x": np.zeros((3, 2))}),                       # clashes with an axis
])
def test_failed_write_leaves_existing_file(tmp_path, bad):
    path = tmp_path / "solution.nc"
    axes = _grid(3, 2)
    write_solution(path, ("x", "t"), axes, {"u": np.ones((3, 2))})
    before = path.read_bytes()

    with pytest.raises(ValueError):
        write_solution(path, ("x", "t"), axes, **bad)
    assert path.read_bytes() == before
    assert _temp_files(tmp_path) == []


def test_failure_while_writing_cleans_up(tmp_path, monkeypatch):
    # An error raised after the temp file exists (disk full, say) must not reach `path`.
    import ddpinn.io.netcdf as nc

    path = tmp_path / "solution.nc"
    write_solution(path, ("x",), _grid(3), {"u": np.ones(3)})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nc, "_write_error", boom)
    with pytest.raises(OSError, match="disk full"):
        write_solution(path, ("x",), _grid(3), {"u": np.zeros(3)}, errors={"u": np.zeros(3)})
    assert path.read_bytes() == before
    assert _temp_files(tmp_path) == []


def test_bad_axes_rejected(tmp_path):
    path = tmp_path / "solution.nc"
    with pytest.raises(ValueError, match="monotonic"):
        write_solution(path, ("x",), [np.array([0.0, 1.0, 0.5])], {"u": np.zeros(3)})
    with pytest.raises(ValueError, match="axis_values"):
        write_solution(path, ("x", "y"), _grid(3), {"u": np.zeros(3)})
    assert not path.exists()
    assert _temp_files(tmp_path) == []

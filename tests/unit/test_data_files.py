"""ddpinn.data: [[data]] tables, CSV and NetCDF point lists, NetCDF grids, boxes and
interpolation, and the error of each kind of bad file."""
from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from ddpinn.data import (INTERPOLATIONS, USES, DataBlock, DataFileError, DataSource, DataSpec,
                         check_covers, open_data, parse_data_tables)
from ddpinn.data import csv_points, netcdf_source

XYT = {"x": "x", "y": "y", "t": "t"}
XYZ = {"x": "x", "y": "y", "z": "z"}


def linear(x, y, z=0.0, t=0.0):
    """Two fields linear in every axis."""
    return np.stack([1.0 + 2.0 * x - 3.0 * y + 0.5 * z + 0.25 * t,
                     -2.0 + x + 4.0 * y - z + 1.5 * t], axis=-1)


def write_csv(path, header, rows, before=""):
    lines = [before] if before else []
    lines.append(header)
    lines += [",".join(repr(float(v)) if not isinstance(v, str) else v for v in r)
              for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_grid(path, coords: dict, fields: dict, fill=None):
    """NetCDF grid: ``coords`` name -> 1D values (dimension order of the fields), ``fields``
    name -> array on those dimensions."""
    with netCDF4.Dataset(path, "w") as ds:
        for name, c in coords.items():
            ds.createDimension(name, len(c))
            ds.createVariable(name, "f8", (name,))[:] = c
        for name, values in fields.items():
            var = ds.createVariable(name, "f8", tuple(coords), fill_value=fill)
            var[:] = values
    return path


def write_nc_points(path, columns: dict, dims=None):
    with netCDF4.Dataset(path, "w") as ds:
        for name, values in columns.items():
            dim = (dims or {}).get(name, "point")
            if dim not in ds.dimensions:
                ds.createDimension(dim, len(values))
            ds.createVariable(name, "f8", (dim,))[:] = values
    return path


def grid_2dt(tmp_path, name="g.nc", ny=9):
    """u, v on dims (t, y, x): linear data; returns (path, x, y, t)."""
    x, y, t = np.linspace(0, 1, 11), np.linspace(-1, 1, ny), np.linspace(0, 0.5, 6)
    T, Y, X = np.meshgrid(t, y, x, indexing="ij")
    f = linear(X, Y, t=T)
    write_grid(tmp_path / name, {"t": t, "y": y, "x": x}, {"u": f[..., 0], "v": f[..., 1]})
    return tmp_path / name, x, y, t


def grid_3d(tmp_path, n=40):
    c = np.linspace(0, 1, n)
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")
    f = linear(X, Y, Z)
    write_grid(tmp_path / "g3.nc", {"z": c, "y": c, "x": c}, {"u": f[..., 0]})
    return tmp_path / "g3.nc", c


# ------------------------------------------------------------------------- each format


def test_csv_read_back_in_case_axis_order(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (30, 3))
    f = linear(pts[:, 0], pts[:, 1], t=pts[:, 2])
    rows = np.column_stack([pts[:, 2], f[:, 1], pts[:, 0], f[:, 0], pts[:, 1]])
    path = write_csv(tmp_path / "a.csv", "t,v,x,u,y", rows, before="# probes")
    src = open_data(path, XYT, {}, outputs=("u", "v", "p"))
    assert isinstance(src, DataSource)
    assert (src.kind, src.axes, src.fields) == ("points", ("x", "y", "t"), ("u", "v"))
    assert src.bytes_read == 0
    lo, hi = src.bounds()
    np.testing.assert_array_equal(lo, pts.min(axis=0))
    np.testing.assert_array_equal(hi, pts.max(axis=0))
    block = src.read_box(lo, hi)
    assert isinstance(block, DataBlock)
    np.testing.assert_array_equal(block.points, pts)
    np.testing.assert_array_equal(block.values, f)
    assert src.bytes_read > 0


def test_csv_chunks_give_the_same_rows(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (100, 2))
    path = write_csv(tmp_path / "a.csv", "x,y,u", np.column_stack([pts, pts[:, 0]]))
    whole = open_data(path, {"x": "x", "y": "y"}, {"u": "u"}).read_box([0, 0], [0.5, 1])
    monkeypatch.setattr(csv_points, "CHUNK_ROWS", 7)
    part = open_data(path, {"x": "x", "y": "y"}, {"u": "u"}).read_box([0, 0], [0.5, 1])
    np.testing.assert_array_equal(whole.points, part.points)
    np.testing.assert_array_equal(whole.values, part.values)


def test_netcdf_points_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(netcdf_source, "CHUNK_ROWS", 16)
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 1, (50, 2))
    f = linear(pts[:, 0], pts[:, 1])
    path = write_nc_points(tmp_path / "p.nc", {"lon": pts[:, 0], "lat": pts[:, 1],
                                               "u_obs": f[:, 0]})
    src = open_data(path, {"x": "lon", "y": "lat"}, {"u": "u_obs"})
    assert (src.kind, src.fields) == ("points", ("u",))
    block = src.read_box([0, 0], [1, 1])
    np.testing.assert_array_equal(block.points, pts)
    np.testing.assert_array_equal(block.values[:, 0], f[:, 0])
    lo = np.array([0.2, 0.3])
    hi = np.array([0.7, 0.9])
    inside = np.all((pts >= lo) & (pts <= hi), axis=1)
    sub = src.read_box(lo, hi)
    np.testing.assert_array_equal(sub.points, pts[inside])
    np.testing.assert_array_equal(sub.values[:, 0], f[inside, 0])


def test_netcdf_grid_tzyx_to_case_order(tmp_path):
    x, y, z, t = (np.linspace(0, 1, 5), np.linspace(0, 2, 4), np.linspace(-1, 0, 3),
                  np.linspace(0, 0.3, 7))
    T, Z, Y, X = np.meshgrid(t, z, y, x, indexing="ij")
    f = linear(X, Y, Z, T)
    path = write_grid(tmp_path / "g.nc", {"time": t, "z": z, "y": y, "x": x},
                      {"u": f[..., 0], "v": f[..., 1]})
    src = open_data(path, {"x": "x", "y": "y", "z": "z", "t": "time"}, {},
                    outputs=("v", "u"))
    assert (src.kind, src.fields) == ("grid", ("v", "u"))
    lo, hi = src.bounds()
    np.testing.assert_array_equal(lo, [0, 0, -1, 0])
    np.testing.assert_array_equal(hi, [1, 2, 0, 0.3])
    block = src.read_box(lo, hi)
    for g, c in zip(block.grid, (x, y, z, t)):
        np.testing.assert_array_equal(g, c)
    Xc, Yc, Zc, Tc = np.meshgrid(x, y, z, t, indexing="ij")
    expected = linear(Xc, Yc, Zc, Tc)[..., ::-1]
    assert block.values.shape == (5, 4, 3, 7, 2)
    np.testing.assert_allclose(block.values, expected, rtol=0, atol=1e-14)


def test_decreasing_coordinate_is_flipped(tmp_path):
    x, y = np.linspace(0, 1, 6), np.linspace(1, -1, 5)          # y decreasing in the file
    Y, X = np.meshgrid(y, x, indexing="ij")
    write_grid(tmp_path / "d.nc", {"y": y, "x": x}, {"u": linear(X, Y)[..., 0]})
    src = open_data(tmp_path / "d.nc", {"x": "x", "y": "y"}, {"u": "u"})
    block = src.read_box([0, -1], [1, 1])
    np.testing.assert_array_equal(block.grid[1], y[::-1])
    Xc, Yc = np.meshgrid(x, y[::-1], indexing="ij")
    np.testing.assert_allclose(block.values[..., 0], linear(Xc, Yc)[..., 0], atol=1e-14)
    sub = src.read_box([0.2, 0.1], [0.5, 0.4])
    assert sub.grid[1][0] <= 0.1 and sub.grid[1][-1] >= 0.4
    assert np.all(np.diff(sub.grid[1]) > 0)
    q = np.array([[0.3, 0.25], [0.2, 0.1], [0.5, 0.4]])
    np.testing.assert_allclose(sub.interpolate(q)[:, 0], linear(q[:, 0], q[:, 1])[:, 0],
                               atol=1e-12)


# ------------------------------------------------------------------------- interpolation


def test_grid_interpolation_exact_2d_plus_time(tmp_path):
    path, *_ = grid_2dt(tmp_path)
    src = open_data(path, XYT, {"u": "u", "v": "v"})
    block = src.read_box(*src.bounds())
    q = np.random.default_rng(3).uniform([0, -1, 0], [1, 1, 0.5], (200, 3))
    q[:3] = [[0, -1, 0], [1, 1, 0.5], [1, -1, 0.25]]
    np.testing.assert_allclose(block.interpolate(q), linear(q[:, 0], q[:, 1], t=q[:, 2]),
                               rtol=0, atol=1e-12)


def test_grid_interpolation_exact_3d_and_nearest(tmp_path):
    path, c = grid_3d(tmp_path, n=12)
    src = open_data(path, XYZ, {"u": "u"})
    block = src.read_box(*src.bounds())
    q = np.random.default_rng(4).uniform(0, 1, (200, 3))
    np.testing.assert_allclose(block.interpolate(q)[:, 0], linear(*q.T)[:, 0], atol=1e-12)
    near = open_data(path, XYZ, {"u": "u"}, interpolation="nearest").read_box([0] * 3, [1] * 3)
    assert near.interpolation == "nearest"
    nodes = np.array([[c[1], c[5], c[10]], [c[0], c[0], c[3]]])
    jitter = nodes + 0.2 * (c[1] - c[0])
    jitter[1] = nodes[1]
    np.testing.assert_allclose(near.interpolate(jitter)[:, 0], linear(*nodes.T)[:, 0],
                               atol=1e-13)


def cubic(x, y, z, t):
    """A field of degree 3 in each axis (a tensor product of cubics, with mixed terms)."""
    return (1.0 + x ** 3 - 2.0 * x * y ** 2 + 0.5 * z ** 3 * t - y * t ** 3
            + x ** 3 * y ** 3 * z ** 3 * t ** 3)


def grid_cubic(tmp_path, n=(9, 8, 7, 6)):
    """u = cubic(x, y, z, t) on a non-uniform grid, dims (t, z, y, x), y decreasing."""
    rng = np.random.default_rng(11)
    axes = [np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0.05, 0.95, k - 2)])) for k in n]
    x, y, z, t = axes
    T, Z, Y, X = np.meshgrid(t, z, y[::-1], x, indexing="ij")
    write_grid(tmp_path / "c.nc", {"t": t, "z": z, "y": y[::-1], "x": x},
               {"u": cubic(X, Y, Z, T)})
    return tmp_path / "c.nc", axes


def test_cubic_interpolation_exact_on_cubics_and_nodes(tmp_path):
    path, axes = grid_cubic(tmp_path)
    xyzt = {"x": "x", "y": "y", "z": "z", "t": "t"}
    block = open_data(path, xyzt, {"u": "u"}, interpolation="cubic").read_box([0] * 4, [1] * 4)
    q = np.random.default_rng(12).uniform(0, 1, (500, 4))
    np.testing.assert_allclose(block.interpolate(q)[:, 0], cubic(*q.T), rtol=0, atol=1e-12)
    linear_block = open_data(path, xyzt, {"u": "u"}).read_box([0] * 4, [1] * 4)
    assert np.abs(linear_block.interpolate(q)[:, 0] - cubic(*q.T)).max() > 1e-3
    nodes = np.array(np.meshgrid(*axes, indexing="ij")).reshape(4, -1).T
    exact = block.values[..., 0].reshape(-1)  # in (x, y, z, t) order, as the nodes
    assert np.array_equal(block.interpolate(nodes)[:, 0], exact)


def test_cubic_interpolation_of_a_part_equals_the_whole_bitwise(tmp_path):
    """A value depends on the 4 lines around it per axis, and a part is read with one line
    of margin: every rank's part gives the whole file's numbers."""
    path, _ = grid_cubic(tmp_path, n=(17, 15, 13, 9))
    xyzt = {"x": "x", "y": "y", "z": "z", "t": "t"}
    with netCDF4.Dataset(path, "a") as ds:  # a field no cubic reproduces
        T, Z, Y, X = np.meshgrid(*[ds[a][:] for a in "tzyx"], indexing="ij")
        ds["u"][:] = np.sin(3 * X) * np.cos(2 * Y) + np.sin(Z + 2 * T)
    whole = open_data(path, xyzt, {"u": "u"}, interpolation="cubic").read_box([0] * 4,
                                                                               [1] * 4)
    rng = np.random.default_rng(13)
    for lo, hi in [([0.3, 0.0, 0.2, 0.5], [0.6, 0.4, 0.9, 1.0]),
                   ([0.0, 0.55, 0.0, 0.0], [0.2, 1.0, 0.45, 0.3])]:
        src = open_data(path, xyzt, {"u": "u"}, interpolation="cubic")
        part = src.read_box(lo, hi)
        assert part.values.size < whole.values.size / 4
        q = np.vstack([lo, hi, rng.uniform(lo, hi, (300, 4))])
        assert np.array_equal(part.interpolate(q), whole.interpolate(q))


def test_cubic_is_closer_than_linear_on_smooth_data(tmp_path):
    c = np.linspace(0, 1, 17)
    Y, X = np.meshgrid(c, c, indexing="ij")
    write_grid(tmp_path / "s.nc", {"y": c, "x": c}, {"u": np.sin(4 * X) * np.cos(3 * Y)})
    q = np.random.default_rng(14).uniform(0, 1, (400, 2))
    true = np.sin(4 * q[:, 0]) * np.cos(3 * q[:, 1])
    err = {}
    for kind in ("linear", "cubic"):
        block = open_data(tmp_path / "s.nc", {"x": "x", "y": "y"}, {"u": "u"},
                          interpolation=kind).read_box([0, 0], [1, 1])
        err[kind] = np.sqrt(np.mean((block.interpolate(q)[:, 0] - true) ** 2))
    assert err["cubic"] < err["linear"] / 20, err


def test_cubic_on_short_axes_takes_every_line(tmp_path):
    """An axis of 2 or 3 lines takes all of them: linear, quadratic; one line is constant."""
    x, y, t = np.array([0.0, 0.3, 1.0]), np.array([0.0, 1.0]), np.array([0.5])
    T, Y, X = np.meshgrid(t, y, x, indexing="ij")
    write_grid(tmp_path / "q.nc", {"t": t, "y": y, "x": x}, {"u": X ** 2 * Y + 2 * Y})
    block = open_data(tmp_path / "q.nc", XYT, {"u": "u"}, interpolation="cubic").read_box(
        [0, 0, 0.5], [1, 1, 0.5])
    q = np.random.default_rng(15).uniform([0, 0, 0.5], [1, 1, 0.5], (50, 3))
    np.testing.assert_allclose(block.interpolate(q)[:, 0], q[:, 0] ** 2 * q[:, 1]
                               + 2 * q[:, 1], rtol=0, atol=1e-13)


def test_cubic_interpolation_of_scattered_points_is_refused(tmp_path):
    path = write_csv(tmp_path / "p.csv", "x,u", [[0.0, 1.0], [0.5, 2.0], [1.0, 0.0]])
    with pytest.raises(DataFileError, match="'cubic' needs gridded data"):
        open_data(path, {"x": "x"}, {"u": "u"}, interpolation="cubic")


def test_single_coordinate_axis_is_constant(tmp_path):
    x, t = np.linspace(0, 1, 5), np.array([0.0])
    T, X = np.meshgrid(t, x, indexing="ij")
    write_grid(tmp_path / "ic.nc", {"t": t, "x": x}, {"u": 3 * X})
    block = open_data(tmp_path / "ic.nc", {"x": "x", "t": "t"}, {"u": "u"}).read_box(
        [0, 0], [1, 0])
    np.testing.assert_allclose(block.interpolate([[0.3, 0.0]])[:, 0], [0.9], atol=1e-14)
    with pytest.raises(DataFileError, match="t in \\[0, 0\\]"):
        block.interpolate([[0.3, 0.1]])


def test_scattered_points_linear_exact(tmp_path):
    rng = np.random.default_rng(5)
    pts = np.vstack([[[0, 0], [1, 0], [0, 1], [1, 1]], rng.uniform(0, 1, (60, 2))])
    f = linear(pts[:, 0], pts[:, 1])
    path = write_csv(tmp_path / "s.csv", "x,y,u,v", np.column_stack([pts, f]))
    src = open_data(path, {"x": "x", "y": "y"}, {}, outputs=("u", "v"))
    block = src.read_box([0, 0], [1, 1])
    q = np.vstack([[[0, 0], [1, 1], [0.5, 1]], rng.uniform(0, 1, (100, 2))])
    np.testing.assert_allclose(block.interpolate(q), linear(q[:, 0], q[:, 1]), atol=1e-12)
    with pytest.raises(DataFileError, match="outside"):
        block.interpolate([[0.5, 1.01]])


def test_points_one_axis_and_nearest(tmp_path):
    x = np.array([0.0, 0.5, 0.2, 1.0])
    path = write_csv(tmp_path / "l.csv", "x,u", np.column_stack([x, 2 * x + 1]))
    block = open_data(path, {"x": "x"}, {"u": "u"}).read_box([0], [1])
    np.testing.assert_allclose(block.interpolate([[0.1], [0.75]])[:, 0], [1.2, 2.5])
    near = open_data(path, {"x": "x"}, {"u": "u"}, interpolation="nearest").read_box([0], [1])
    np.testing.assert_allclose(near.interpolate([[0.14], [0.9]])[:, 0], [1.4, 3.0])


# ------------------------------------------------------------------------- boxes


def test_sub_box_reads_only_a_slab(tmp_path):
    path, c = grid_3d(tmp_path, n=40)
    full = open_data(path, XYZ, {"u": "u"})
    full.read_box([0] * 3, [1] * 3)
    src = open_data(path, XYZ, {"u": "u"})
    lo, hi = np.array([0.5, 0.0, 0.25]), np.array([1.0, 0.5, 0.75])   # 1/8 of the grid
    block = src.read_box(lo, hi)
    assert src.bytes_read < full.bytes_read / 4
    assert src.estimate_bytes(lo, hi) == block.nbytes
    assert full.estimate_bytes([0] * 3, [1] * 3) == 40 ** 3 * 8 + 3 * 40 * 8
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
    q = np.vstack([corners, np.random.default_rng(6).uniform(lo, hi, (100, 3))])
    np.testing.assert_allclose(block.interpolate(q)[:, 0], linear(*q.T)[:, 0], atol=1e-12)
    for k in range(3):
        assert block.grid[k][0] < lo[k] or block.grid[k][0] == c[0]
        assert block.grid[k][-1] > hi[k] or block.grid[k][-1] == c[-1]


def test_points_box_returns_exactly_the_rows_inside(tmp_path):
    rng = np.random.default_rng(7)
    pts = rng.uniform(0, 1, (200, 3))
    pts[0] = [0.25, 0.25, 0.5]                                  # on the box's corner
    f = linear(pts[:, 0], pts[:, 1], t=pts[:, 2])
    path = write_csv(tmp_path / "p.csv", "x,y,t,u,v", np.column_stack([pts, f]))
    src = open_data(path, XYT, {"u": "u", "v": "v"})
    lo, hi = np.array([0.25, 0.25, 0.0]), np.array([0.75, 0.8, 0.5])
    inside = np.all((pts >= lo) & (pts <= hi), axis=1)
    block = src.read_box(lo, hi)
    np.testing.assert_array_equal(block.points, pts[inside])
    np.testing.assert_array_equal(block.values, f[inside])
    assert src.estimate_bytes(lo, hi) == block.nbytes


# ------------------------------------------------------------------------- errors


def test_missing_column_lists_those_available(tmp_path):
    path = write_csv(tmp_path / "a.csv", "x,yy,u", [[0, 0, 1]])
    with pytest.raises(DataFileError, match=r"a\.csv.*no column 'y'.*'x', 'yy', 'u'"):
        open_data(path, {"x": "x", "y": "y"}, {"u": "u"})
    path, *_ = grid_2dt(tmp_path)
    with pytest.raises(DataFileError, match=r"no variable 'w'.*'t', 'y', 'x', 'u', 'v'"):
        open_data(path, XYT, {"u": "w"})
    with pytest.raises(DataFileError, match="none of the outputs p"):
        open_data(path, XYT, {}, outputs=("p",))


def test_nan_in_csv_names_column_and_line(tmp_path):
    path = write_csv(tmp_path / "a.csv", "x,u", [[0, 1], [0.5, "nan"], [1, 2]])
    src = open_data(path, {"x": "x"}, {"u": "u"})
    with pytest.raises(DataFileError, match=r"a\.csv.*column 'u'.*NaN.*on line 3"):
        src.read_box([0], [1])
    path = write_csv(tmp_path / "b.csv", "x,u", [[0, 1], ["", 1]])
    with pytest.raises(DataFileError, match=r"column 'x'.*on line 3"):
        open_data(path, {"x": "x"}, {"u": "u"}).bounds()
    path = write_csv(tmp_path / "c.csv", "x,u", [[0, 1], ["zero", 1]])
    with pytest.raises(DataFileError, match=r"line 3, column 'x': 'zero' is not a number"):
        open_data(path, {"x": "x"}, {"u": "u"}).bounds()


@pytest.mark.parametrize("bad", ["fill", "nan"])
def test_fill_or_nan_in_netcdf_grid(tmp_path, bad):
    x, y = np.linspace(0, 1, 5), np.linspace(0, 1, 4)
    u = np.ones((4, 5))
    if bad == "fill":
        u = np.ma.masked_array(u, mask=np.zeros_like(u, dtype=bool))
        u.mask[2, 3] = True
    else:
        u[2, 3] = np.nan
    path = write_grid(tmp_path / "g.nc", {"y": y, "x": x}, {"u": u}, fill=-999.0)
    src = open_data(path, {"x": "x", "y": "y"}, {"u": "u"})
    with pytest.raises(DataFileError,
                       match=r"g\.nc.*'u'.*grid index \[y=2, x=3\] \(y=0.6666666667, x=0.75\)"):
        src.read_box([0, 0], [1, 1])
    src.read_box([0, 0], [0.2, 0.2])                            # the slab misses it


def test_check_covers(tmp_path):
    path, *_ = grid_2dt(tmp_path)
    src = open_data(path, XYT, {"u": "u"})
    check_covers(src, [0, -1, 0], [1, 1, 0.5 + 1e-12], "the domain")
    with pytest.raises(DataFileError,
                       match=r"g\.nc' covers t in \[0, 0.5\] but the domain needs t in "
                             r"\[0, 0.6\]"):
        check_covers(src, [0, -1, 0], [1, 1, 0.6], "the domain")


def test_non_monotonic_coordinate(tmp_path):
    x = np.array([0.0, 0.5, 0.4, 1.0])
    path = write_grid(tmp_path / "g.nc", {"x": x, "y": np.arange(3.0)},
                      {"u": np.zeros((4, 3))})
    src = open_data(path, {"x": "x", "y": "y"}, {"u": "u"})
    with pytest.raises(DataFileError, match=r"'x' is not strictly monotonic: x\[1\] = 0.5"):
        src.bounds()


def test_point_outside_grid_coverage(tmp_path):
    path, *_ = grid_2dt(tmp_path)
    block = open_data(path, XYT, {"u": "u"}).read_box([0.2, 0, 0], [0.4, 0.5, 0.1])
    block.interpolate([[0.3, 0.2, 0.05]])
    with pytest.raises(DataFileError, match=r"g\.nc.*point 1 \(x=0.9, y=0.2, t=0.05\) is "
                                            r"outside"):
        block.interpolate([[0.3, 0.2, 0.05], [0.9, 0.2, 0.05]])


def test_empty_csv(tmp_path):
    (tmp_path / "e.csv").write_text("\n# nothing\n")
    with pytest.raises(DataFileError, match=r"e\.csv' is empty"):
        open_data(tmp_path / "e.csv", {"x": "x"}, {"u": "u"})
    (tmp_path / "h.csv").write_text("x,u\n\n")
    with pytest.raises(DataFileError, match=r"h\.csv' holds no rows"):
        open_data(tmp_path / "h.csv", {"x": "x"}, {"u": "u"})


def test_unreadable_and_malformed_netcdf(tmp_path):
    with pytest.raises(DataFileError, match="cannot read data file .*nope.nc"):
        open_data(tmp_path / "nope.nc", {"x": "x"}, {"u": "u"})
    write_nc_points(tmp_path / "m.nc", {"x": np.arange(3.0), "u": np.arange(4.0)},
                    dims={"u": "other"})
    with pytest.raises(DataFileError, match="different lengths .*x: 3, u: 4"):
        open_data(tmp_path / "m.nc", {"x": "x"}, {"u": "u"})
    with netCDF4.Dataset(tmp_path / "n.nc", "w") as ds:
        ds.createDimension("x", 3)
        ds.createDimension("y", 2)
        ds.createVariable("y", "f8", ("y",))[:] = [0, 1]
        ds.createVariable("u", "f8", ("y", "x"))[:] = np.zeros((2, 3))
        ds.createVariable("w", "f8", ("x", "y", "y"))
    with pytest.raises(DataFileError, match="dimension 'x' has no coordinate variable"):
        open_data(tmp_path / "n.nc", {"x": "x", "y": "y"}, {"u": "u"})
    with pytest.raises(DataFileError, match=r"'w' has dimensions \('x', 'y', 'y'\)"):
        open_data(tmp_path / "n.nc", {"x": "x", "y": "y"}, {"u": "w"})


# ------------------------------------------------------------------------- [[data]] tables


def test_parse_data_tables_defaults():
    specs = parse_data_tables(
        [{"file": "a.csv", "use": "observations", "noise": 0.1},
         {"file": "b.nc", "use": "boundary", "fields": ["u"], "axes": {"t": "time"},
          "interpolation": "nearest", "name": "inflow"},
         {"file": "c.nc", "use": "reference", "fields": {"v": "V"}}],
        ("x", "y", "t"), ("u", "v", "p"))
    assert specs[0] == DataSpec("data0", "a.csv", "observations", {}, XYT,
                                {"u": 0.1, "v": 0.1, "p": 0.1}, "linear")
    assert specs[1].name == "inflow" and specs[1].fields == {"u": "u"}
    assert list(specs[1].axes.items()) == [("x", "x"), ("y", "y"), ("t", "time")]
    assert specs[1].interpolation == "nearest" and specs[1].noise == {}
    assert specs[2].fields == {"v": "V"}
    assert parse_data_tables(None, ("x",), ("u",)) == []
    assert set(USES) == {"observations", "boundary", "reference"}
    assert INTERPOLATIONS == ("linear", "nearest", "cubic")


GOOD = {"file": "a.csv", "use": "observations"}


@pytest.mark.parametrize("tables, message", [
    ([GOOD, {**GOOD, "use": "obs"}],
     "field 'data.1.use' = 'obs': must be one of observations, boundary, reference"),
    ([{**GOOD, "colour": "red"}], "field 'data.0.colour' is not known"),
    ([{"use": "boundary"}], "field 'data.0.file' is missing"),
    ([GOOD, {"file": "b.csv"}], "field 'data.1.use' is missing"),
    ([{**GOOD, "file": 3}], "field 'data.0.file' = 3 has the wrong type"),
    ([{**GOOD, "fields": "u"}], "field 'data.0.fields' = 'u' has the wrong type"),
    ([{**GOOD, "fields": {"w": "w"}}], "field 'data.0.fields.w' names no output"),
    ([{**GOOD, "axes": {"z": "depth"}}], "field 'data.0.axes.z' names no axis"),
    ([{**GOOD, "axes": {"x": "y"}}], "field 'data.0.axes.y' = 'y'"),
    ([{**GOOD, "noise": 0.0}], "field 'data.0.noise' = 0.0 must be a finite number > 0"),
    ([{**GOOD, "noise": {"u": -1}}], "field 'data.0.noise.u' = -1 must be"),
    ([{**GOOD, "noise": True}], "field 'data.0.noise' = True has the wrong type"),
    ([{**GOOD, "fields": ["u"], "noise": {"v": 1.0}}], "field 'data.0.noise.v' names no field"),
    ([{"file": "a.nc", "use": "reference", "noise": 0.1}],
     "field 'data.0.noise' = 0.1: noise is only given for use = 'observations'"),
    ([{**GOOD, "name": "d"}, {**GOOD, "name": "d"}],
     "field 'data.1.name' = 'd': the name is already used by data.0"),
    ([{**GOOD, "interpolation": "quintic"}],
     "field 'data.0.interpolation' = 'quintic': must be one of linear, nearest, cubic"),
    ({"file": "a.csv"}, "field 'data' must be an array of tables"),
])
def test_parse_data_tables_errors(tables, message):
    with pytest.raises(ValueError) as info:
        parse_data_tables(tables, ("x", "y"), ("u", "v"))
    assert message in str(info.value)


def test_a_rank_with_many_faces_reads_each_once(tmp_path):
    """Boundary data for many experts' faces (more face groups than any fixed count of kept
    blocks): the points drawn anew at a resampling read nothing more from the file."""
    from ddpinn.data.inputs import DataInput

    path, c = grid_3d(tmp_path, n=33)
    src = open_data(path, XYZ, {"u": "u"}, ("u",))
    reads = []
    original = src.read_box
    src.read_box = lambda lo, hi: reads.append(1) or original(lo, hi)
    data = DataInput(DataSpec("d", str(path), "boundary", {"u": "u"}, dict(XYZ), {},
                              "linear", 1.0), src)
    rng = np.random.default_rng(0)
    cells = np.linspace(0, 1, 5)  # 4 x 4 x 4 experts, two faces each: 128 face groups

    def draw():
        for i in range(4):
            for j in range(4):
                for k in range(4):
                    lo = np.array([cells[i], cells[j], cells[k]])
                    for axis in (0, 1):
                        x = lo + rng.uniform(0, 0.25, (50, 3))
                        x[:, axis] = lo[axis]
                        got = data.values_at(x, "u")
                        assert np.allclose(got, linear(*x.T)[:, 0], atol=1e-12)

    draw()
    first = len(reads)
    draw()
    assert first == 128 and len(reads) == first

"""Primitive shapes and STL surfaces: inside test, exact signed distance on sampled boundary
points, outward unit normals, sampling per cell, determinism, measures and quadrature."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddpinn.geometry import (Ball, Cuboid, Cylinder, Disk, EmptyRegion, Interval, Polygon,
                             Rectangle)

L_SHAPE = [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]]

# name -> (shape, points inside, points outside, volume, boundary measure, cell inside bbox)
CASES = {
    "interval": (lambda: Interval([-1.0], [2.0]), [[-1.0], [0.5], [2.0]], [[-1.1], [2.5]],
                 3.0, 2.0, ([0.0], [2.0])),
    "rectangle": (lambda: Rectangle([0, 0], [2, 1], tags={"x_lower": "inlet"}),
                  [[1, 0.5], [0, 0], [2, 1]], [[2.1, 0.5], [1, -0.1]], 2.0, 6.0,
                  ([1.0, 0.0], [3.0, 0.5])),
    "box": (lambda: Cuboid([0, 0, 0], [1, 2, 3]), [[0.5, 1, 1], [1, 2, 3]],
            [[1.5, 1, 1], [0.5, -1, 1]], 6.0, 22.0, ([0.5, 0.5, 0.5], [2, 2, 2])),
    "disk": (lambda: Disk([0.5, -0.5], 0.7), [[0.5, -0.5], [1.2, -0.5]],
             [[1.21, -0.5], [0, 0.2]], math.pi * 0.49, 2 * math.pi * 0.7,
             ([0.5, -0.5], [2.0, 1.0])),
    "ball": (lambda: Ball([0, 0, 1], 0.5), [[0, 0, 1], [0, 0.5, 1]], [[0, 0, 1.51], [1, 1, 1]],
             4 / 3 * math.pi * 0.125, 4 * math.pi * 0.25, ([0, 0, 0], [1, 1, 1.2])),
    "polygon_ccw": (lambda: Polygon(L_SHAPE, tag=["a", "b", "c", "c", "b", "a"]),
                    [[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1, 1]], [[1.5, 1.5], [-0.1, 1]],
                    3.0, 8.0, ([0.5, 0.5], [1.5, 1.5])),
    "polygon_cw": (lambda: Polygon(L_SHAPE[::-1]), [[0.5, 0.5], [1.5, 0.5]], [[1.5, 1.5]],
                   3.0, 8.0, ([0.0, 0.0], [0.9, 0.9])),
    "cylinder": (lambda: Cylinder([1, 0, 0], 0.5, 2.0, axis="x", tags={"side": "wall"}),
                 [[1.5, 0, 0], [3, 0.5, 0], [2, 0.3, -0.3]], [[0.9, 0, 0], [2, 0.4, 0.4]],
                 math.pi * 0.25 * 2, 2 * math.pi * 0.5 * 2 + 2 * math.pi * 0.25,
                 ([0, 0, 0], [2, 1, 1])),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    make, inside, outside, vol, measure, cell = CASES[request.param]
    return make(), np.array(inside, float), np.array(outside, float), vol, measure, cell


def test_inside_on_known_points(case):
    shape, inside, outside, *_ = case
    assert shape.inside(inside).all()
    assert not shape.inside(outside).any()
    assert np.all(shape.sdf(inside) <= shape.tol) and np.all(shape.sdf(outside) > 0)


def test_boundary_points_normals_and_tags(case):
    shape, *_ = case
    pts, normals, tags = shape.sample_boundary(400, np.random.default_rng(1))
    assert pts.shape == normals.shape == (400, shape.dim) and tags.dtype == np.int64
    assert np.abs(shape.sdf(pts)).max() < 1e-9
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    eps = 1e-6 * shape.scale
    assert shape.inside(pts).all()
    assert not shape.inside(pts + eps * normals).any()
    assert shape.inside(pts - eps * normals).all()
    assert set(np.unique(tags)) == set(range(len(shape.tags)))


def test_samples_in_the_cell_and_deterministic(case):
    shape, *_, cell = case
    lo, hi = (np.asarray(v, float) for v in cell)
    x = shape.sample_interior(300, np.random.default_rng(5), lo, hi)
    assert x.shape == (300, shape.dim)
    assert np.all(x >= lo) and np.all(x <= hi) and shape.inside(x).all()
    b, n, t = shape.sample_boundary(200, np.random.default_rng(5), lo, hi)
    assert np.all(b >= lo - 1e-12) and np.all(b <= hi + 1e-12)
    assert np.abs(shape.sdf(b)).max() < 1e-9
    again = shape.sample_boundary(200, np.random.default_rng(5), lo, hi)
    for u, v in zip((b, n, t), again):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(x, shape.sample_interior(300, np.random.default_rng(5), lo, hi))


def test_measures_and_quadrature(case):
    shape, *_, vol, measure, _ = case
    lo, hi = shape.lower - 0.25, shape.upper + 0.25
    cell = float(np.prod(hi - lo))
    assert shape.volume_fraction(lo, hi) * cell == pytest.approx(vol, rel=1e-2)
    assert shape.boundary_measure(lo, hi) == pytest.approx(measure, rel=1e-12)
    total = 0.0
    for tag in shape.tags:
        pts, normals, w = shape.quadrature(tag, 256, np.random.default_rng(0))
        assert pts.shape == normals.shape == (256, shape.dim) and w.shape == (256,)
        assert np.abs(shape.sdf(pts)).max() < 1e-9
        total += w.sum()
    assert total == pytest.approx(measure, rel=1e-12)
    # A cell deep inside and one far outside are decided exactly.
    far = shape.upper + 10.0
    assert shape.volume_fraction(far, far + 1.0) == 0.0
    assert shape.boundary_measure(far, far + 1.0) == 0.0


def test_empty_cell_raises(case):
    shape, *_ = case
    far = shape.upper + 5.0
    with pytest.raises(EmptyRegion, match="no part of the domain"):
        shape.sample_interior(10, np.random.default_rng(0), far, far + 1.0)
    with pytest.raises(EmptyRegion):
        shape.sample_boundary(10, np.random.default_rng(0), far, far + 1.0)


def test_disk_volume_fraction_against_exact_area():
    disk = Disk([0.0, 0.0], 0.3)
    assert disk.volume_fraction([-0.5, -0.5], [0.5, 0.5]) == pytest.approx(math.pi * 0.09,
                                                                         rel=5e-3)
    # A quarter in the cell [0, 1]^2; a cell fully inside is exactly 1.
    assert disk.volume_fraction([0, 0], [1, 1]) == pytest.approx(math.pi * 0.09 / 4, rel=5e-3)
    assert disk.volume_fraction([-0.1, -0.1], [0.1, 0.1]) == 1.0
    assert disk.boundary_measure([0, 0], [1, 1]) == pytest.approx(2 * math.pi * 0.3 / 4,
                                                                  rel=0.05)
    assert disk.face_fraction([0, 0], [1, 1], axis=0, coord=0.0) == pytest.approx(0.3, rel=1e-2)
    assert disk.face_fraction([0, 0], [1, 1], axis=0, coord=0.5) == 0.0


def test_polygon_and_box_tags():
    poly = Polygon(L_SHAPE, tag=["a", "b", "c", "c", "b", "a"])
    assert poly.tags == ("a", "b", "c")
    pts, normals, w = poly.quadrature("c", 64, np.random.default_rng(0))
    assert w.sum() == pytest.approx(2.0)
    rect = Rectangle([0, 0], [2, 1], tags={"y_lower": "wall", "y_upper": "wall"})
    assert rect.tags == ("x_lower", "x_upper", "wall")
    assert rect.boundary_measure([0, 0], [1, 1]) == pytest.approx(3.0)  # x_lower + 2 halves
    with pytest.raises(ValueError, match="unknown face"):
        Rectangle([0, 0], [1, 1], tags={"z_lower": "w"})
    with pytest.raises(ValueError, match="is not one of the domain's tags"):
        rect.quadrature("inlet", 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="radius"):
        Disk([0, 0], -1.0)


def test_interval_end_points_count():
    line = Interval([0.0], [1.0], tags={"x_lower": "left", "x_upper": "right"})
    pts, normals, tags = line.sample_boundary(50, np.random.default_rng(0), [0.5], [1.0])
    assert np.all(pts == 1.0) and np.all(normals == 1.0) and np.all(tags == 1)
    assert line.boundary_measure([0.0], [1.0]) == 2.0
    assert line.face_fraction([0.0], [1.0], 0, 0.5) == 1.0
    assert line.face_fraction([1.0], [2.0], 0, 1.5) == 0.0


# -- STL --------------------------------------------------------------------------------------
def write_cavity(path, inverted_file=False):
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=[2.0, 2.0, 2.0])
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    sphere.invert()  # the cavity's surface faces into the hole
    mesh = trimesh.util.concatenate([box, sphere])
    if inverted_file:
        mesh.invert()
    mesh.export(str(path))
    return mesh


@pytest.mark.parametrize("inverted_file", [False, True])
def test_stl_cube_with_cavity(tmp_path, inverted_file):
    from ddpinn.geometry import StlShape

    mesh = write_cavity(tmp_path / "cavity.stl", inverted_file)
    shape = StlShape(tmp_path / "cavity.stl", tag="walls")
    assert shape.tags == ("walls",) and shape.dim == 3
    assert shape.volume == pytest.approx(abs(mesh.volume))
    np.testing.assert_allclose(shape.lower, [-1, -1, -1])
    x = np.array([[0, 0, 0], [0.8, 0, 0], [0.3, 0, 0], [1.5, 0, 0], [1, 0.2, 0.3]], float)
    np.testing.assert_array_equal(shape.inside(x), [False, True, False, False, True])
    np.testing.assert_allclose(shape.sdf(x[[1, 3, 4]]), [-0.2, 0.5, 0.0], atol=1e-12)
    pts, normals, tags = shape.sample_boundary(300, np.random.default_rng(0))
    assert np.abs(shape.sdf(pts)).max() < 1e-9 and np.all(tags == 0)
    eps = 1e-6
    assert shape.inside(pts - eps * normals).all()
    assert not shape.inside(pts + eps * normals).any()
    inner = np.linalg.norm(pts, axis=1) < 0.6  # cavity normals point to its centre
    assert inner.any() and np.all(np.einsum("ij,ij->i", normals[inner], pts[inner]) < 0)
    assert shape.volume_fraction([-1, -1, -1], [1, 1, 1], n=4000) == pytest.approx(
        shape.volume / 8, rel=5e-3)
    assert shape.volume_fraction([-0.2, -0.2, -0.2], [0.2, 0.2, 0.2]) == 0.0
    _, _, w = shape.quadrature("walls", 100, np.random.default_rng(0))
    assert w.sum() == pytest.approx(mesh.area)


def test_stl_not_closed(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from ddpinn.geometry import StlShape

    box = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    trimesh.Trimesh(box.vertices, box.faces[:-1]).export(str(tmp_path / "open.stl"))
    with pytest.raises(ValueError, match="not a closed surface"):
        StlShape(tmp_path / "open.stl")


def test_small_cells_on_curved_boundaries():
    """Cells far smaller than a sphere or cylinder still get boundary points quickly: the
    pieces are cut to the angles and heights that reach the cell."""
    ball = Ball([0, 0, 0], 1.0)
    lo, hi = np.array([0.99, -0.005, -0.005]), np.array([1.0, 0.005, 0.005])
    pts, normals, _ = ball.sample_boundary(50, np.random.default_rng(0), lo, hi)
    assert np.all(pts >= lo - 1e-12) and np.all(pts <= hi + 1e-12)
    assert np.abs(ball.sdf(pts)).max() < 1e-9
    assert ball.boundary_measure(lo, hi) == pytest.approx(1e-4, rel=1e-2)
    cyl = Cylinder([0, 0, 0], 1.0, 10.0)
    lo, hi = np.array([-0.01, 0.995, 4.0]), np.array([0.0, 1.0, 4.01])
    pts, _, tags = cyl.sample_boundary(50, np.random.default_rng(0), lo, hi)
    assert np.all(tags == 0) and np.all(pts[:, 2] >= 4.0) and np.all(pts[:, 2] <= 4.01)
    assert cyl.boundary_measure(lo, hi) == pytest.approx(1e-4, rel=1e-2)
    disk = Disk([0, 0], 1.0)
    lo, hi = np.array([-1.0, -0.001]), np.array([-0.99, 0.001])
    assert disk.boundary_measure(lo, hi) == pytest.approx(0.002, rel=1e-3)


def test_stl_in_a_composite(tmp_path):
    """A mesh subtracted from a box: its faces bound the hole with inward normals."""
    trimesh = pytest.importorskip("trimesh")
    from ddpinn.geometry import Difference, StlShape

    trimesh.creation.box(extents=[1.0, 1.0, 1.0]).export(str(tmp_path / "cube.stl"))
    shape = Difference(Cuboid([-1, -1, -1], [1, 1, 1]), StlShape(tmp_path / "cube.stl",
                                                                 tag="hole"))
    assert shape.tags[-1] == "hole"
    pts, normals, tags = shape.sample_boundary(200, np.random.default_rng(0))
    assert np.abs(shape.sdf(pts)).max() < 1e-9
    assert not shape.inside(pts + 1e-6 * normals).any()
    assert shape.inside(pts - 1e-6 * normals).all()
    hole = tags == shape.tags.index("hole")
    assert hole.any() and np.all(np.abs(pts[hole]).max(axis=1) == pytest.approx(0.5))
    assert shape.volume_fraction([-1, -1, -1], [1, 1, 1]) == pytest.approx(7 / 8, rel=5e-3)
    assert shape.volume_fraction([-0.4, -0.4, -0.4], [0.4, 0.4, 0.4]) == 0.0

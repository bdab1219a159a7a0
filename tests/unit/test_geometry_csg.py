"""Union, difference and intersection of shapes, and case-file tables -> shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddpinn.geometry import (Ball, Cuboid, Difference, Disk, EmptyRegion, Intersection,
                             Rectangle, Union, shape_from_spec)

DFG = {"type": "difference", "of": [
    {"type": "rectangle", "lower": [0.0, 0.0], "upper": [2.2, 0.41],
     "tags": {"x_lower": "inlet", "x_upper": "outlet", "y_lower": "wall", "y_upper": "wall"}},
    {"type": "disk", "center": [0.2, 0.2], "radius": 0.05, "tag": "cylinder"}]}

# name -> (shape, inside, outside, area, perimeter)
CASES = {
    "dfg": (lambda: shape_from_spec(DFG), [[0.1, 0.1], [0.2, 0.15], [2.2, 0.41]],
            [[0.2, 0.2], [0.22, 0.2], [2.3, 0.2]], 2.2 * 0.41 - math.pi * 0.0025,
            2 * 2.61 + 2 * math.pi * 0.05),
    "union": (lambda: Union(Rectangle([0, 0], [2, 1]), Disk([2, 0.5], 0.5, tag="cap")),
              [[1, 0.5], [2.4, 0.5], [2, 1]], [[2.4, 0.9], [-0.1, 0.5]],
              2 + math.pi * 0.25 / 2, 2 + 2 + 1 + math.pi * 0.5),
    "intersection": (lambda: Intersection(Rectangle([0, 0], [2, 2]), Disk([0, 0], 1.0)),
                     [[0.5, 0.5], [0, 0], [0.7, 0.7]], [[-0.1, 0.5], [0.8, 0.8]],
                     math.pi / 4, 2 + math.pi / 2),
    "nested": (lambda: Difference(Union(Rectangle([0, 0], [1, 1]), Rectangle([1, 0], [2, 1])),
                                  Disk([1, 0.5], 0.25, tag="hole"), Disk([1.7, 0.5], 0.1)),
               [[0.2, 0.2], [1, 0.1]], [[1, 0.5], [1.7, 0.5]],
               2 - math.pi * (0.0625 + 0.01), 6 + 2 * math.pi * 0.35),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    make, inside, outside, area, perimeter = CASES[request.param]
    return make(), np.array(inside, float), np.array(outside, float), area, perimeter


def test_inside_on_known_points(case):
    shape, inside, outside, *_ = case
    assert shape.inside(inside).all()
    assert not shape.inside(outside).any()


def test_boundary_points_lie_on_the_boundary_with_outward_normals(case):
    shape, *_ = case
    pts, normals, tags = shape.sample_boundary(600, np.random.default_rng(2))
    assert np.abs(shape.sdf(pts)).max() < 1e-9
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    eps = 1e-6 * shape.scale
    assert not shape.inside(pts + eps * normals).any()
    assert shape.inside(pts - eps * normals).all()
    assert set(np.unique(tags)) <= set(range(len(shape.tags)))


def test_measures(case):
    shape, *_, area, perimeter = case
    lo, hi = shape.lower - 0.1, shape.upper + 0.1
    cell = float(np.prod(hi - lo))
    assert shape.volume_fraction(lo, hi) * cell == pytest.approx(area, rel=5e-3)
    assert shape.boundary_measure(lo, hi) == pytest.approx(perimeter, rel=1e-2)
    total = 0.0
    for tag in shape.tags:
        try:
            total += shape.quadrature(tag, 2000, np.random.default_rng(0))[2].sum()
        except EmptyRegion:  # a piece the composite swallows whole
            assert shape.boundary_measure(lo, hi) == pytest.approx(perimeter, rel=1e-2)
    assert total == pytest.approx(perimeter, rel=2e-2)


def test_samples_in_cell_and_deterministic(case):
    shape, *_ = case
    lo = shape.lower + 0.25 * (shape.upper - shape.lower)
    hi = shape.lower + 0.75 * (shape.upper - shape.lower)
    a = shape.sample_interior(200, np.random.default_rng(9), lo, hi)
    assert np.all(a >= lo) and np.all(a <= hi) and shape.inside(a).all()
    np.testing.assert_array_equal(a, shape.sample_interior(200, np.random.default_rng(9), lo, hi))
    b, n, t = shape.sample_boundary(100, np.random.default_rng(9), shape.lower, hi)
    assert np.all(b <= hi + 1e-12)
    for u, v in zip((b, n, t), shape.sample_boundary(100, np.random.default_rng(9),
                                                     shape.lower, hi)):
        np.testing.assert_array_equal(u, v)


def test_dfg_tags_and_cylinder_normals():
    shape = shape_from_spec(DFG)
    assert shape.tags == ("inlet", "outlet", "wall", "cylinder")
    pts, normals, w = shape.quadrature("cylinder", 500, np.random.default_rng(0))
    assert w.sum() == pytest.approx(2 * math.pi * 0.05, rel=1e-12)  # the disk is whole
    toward_centre = np.array([0.2, 0.2]) - pts
    np.testing.assert_allclose(normals, toward_centre / 0.05, atol=1e-9)
    assert shape.quadrature("wall", 10, np.random.default_rng(0))[2].sum() == \
        pytest.approx(4.4)
    # Boundary points of the cylinder only in the cell around it.
    b, _, t = shape.sample_boundary(100, np.random.default_rng(0), [0.0, 0.0], [0.275, 0.41])
    assert set(np.unique(t).tolist()) == {0, 2, 3}
    with pytest.raises(EmptyRegion):
        shape.sample_interior(10, np.random.default_rng(0), [0.17, 0.17], [0.23, 0.23])


def test_abutting_union_has_no_inner_face():
    shape = Union(Rectangle([0, 0], [1, 1]), Rectangle([1, 0], [2, 1]))
    assert shape.boundary_measure([-1, -1], [3, 2]) == pytest.approx(6.0)
    pts, _, _ = shape.sample_boundary(500, np.random.default_rng(0))
    inner = (np.abs(pts[:, 0] - 1.0) < 1e-12) & (pts[:, 1] > 1e-9) & (pts[:, 1] < 1 - 1e-9)
    assert not inner.any()
    # Overlapping boxes share their bottom face on [1, 2]: counted once.
    over = Union(Rectangle([0, 0], [2, 1]), Rectangle([1, 0], [3, 1]))
    assert over.boundary_measure([-1, -1], [4, 2]) == pytest.approx(8.0, rel=1e-2)


def test_three_dimensional_difference():
    shape = Difference(Cuboid([0, 0, 0], [1, 1, 1]), Ball([0.5, 0.5, 0.5], 0.3, tag="hole"))
    assert shape.tags == ("x_lower", "x_upper", "y_lower", "y_upper", "z_lower", "z_upper",
                          "hole")
    _, _, w = shape.quadrature("hole", 200, np.random.default_rng(0))
    assert w.sum() == pytest.approx(4 * math.pi * 0.09)
    assert shape.volume_fraction([0, 0, 0], [1, 1, 1]) == pytest.approx(
        1 - 4 / 3 * math.pi * 0.027, rel=5e-3)


# -- specs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,message", [
    ({"type": "difference", "of": [DFG["of"][0], {"type": "disk", "center": [0.2, 0.2],
                                                  "radius": -1.0}]},
     r"field 'domain\.shape\.of\[1\]\.radius' = -1\.0 must be a positive number"),
    ({"type": "hexagon"}, "field 'domain.shape.type' = 'hexagon' must be one of"),
    ({"type": "union", "of": [DFG["of"][0]]}, "'domain.shape.of' .* at least 2 shapes"),
    ({"type": "rectangle", "lower": [0, 0], "upper": [1]},
     "field 'domain.shape.upper' = \\[1\\] must be a list of 2 numbers"),
    ({"type": "rectangle", "lower": [0, 0], "upper": [1, 1], "tags": {"w_lower": "a"}},
     "field 'domain.shape.tags.w_lower' is not known"),
    ({"type": "disk", "center": [0, 0], "radius": 1, "colour": "red"},
     "field 'domain.shape.colour' is not known"),
    ({"type": "polygon", "vertices": [[0, 0], [1, 0]]}, "'domain.shape.vertices'"),
    ({"type": "polygon", "vertices": [[0, 0], [1, 0], [0, 1]], "tags": ["a"]},
     "'domain.shape.tags' .* 3 strings"),
    ({"type": "cylinder", "center": [0, 0, 0], "radius": 1, "height": 1, "axis": "w"},
     "'domain.shape.axis' = 'w' must be one of"),
    ({"type": "stl", "file": "missing.stl"}, "'domain.shape.file' = 'missing.stl'"),
    ({"type": "disk", "center": [0, 0]}, "field 'domain.shape.radius' is missing"),
])
def test_spec_errors_name_the_field(spec, message):
    with pytest.raises(ValueError, match=message):
        shape_from_spec(spec)


def test_spec_types(tmp_path):
    cyl = shape_from_spec({"type": "cylinder", "center": [0, 0, 0], "radius": 0.5,
                           "height": 2.0, "axis": "y", "tags": {"side": "wall"}})
    assert cyl.tags == ("wall", "bottom", "top")
    np.testing.assert_allclose(cyl.upper, [0.5, 2.0, 0.5])
    poly = shape_from_spec({"type": "polygon", "vertices": [[0, 0], [1, 0], [0, 1]],
                            "tags": ["a", "b", "a"]})
    assert poly.tags == ("a", "b")
    assert shape_from_spec({"type": "interval", "lower": [0], "upper": [1]}).dim == 1
    assert shape_from_spec({"type": "ball", "center": [0, 0, 0], "radius": 1}).tags == ("ball",)
    inter = shape_from_spec({"type": "intersection", "of": [
        {"type": "box", "lower": [0, 0, 0], "upper": [1, 1, 1]},
        {"type": "ball", "center": [0, 0, 0], "radius": 1.0}]})
    assert inter.inside(np.array([[0.5, 0.5, 0.5]])).all()
    trimesh = pytest.importorskip("trimesh")
    trimesh.creation.box(extents=[1, 1, 1]).export(str(tmp_path / "cube.stl"))
    stl = shape_from_spec({"type": "stl", "file": "cube.stl", "tag": "body"},
                          base_dir=tmp_path)
    assert stl.tags == ("body",)
    np.testing.assert_allclose(stl.lower, [-0.5, -0.5, -0.5])

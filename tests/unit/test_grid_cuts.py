"""Grids with given cut positions (``decomposition.cuts``): cells end exactly at the cuts,
the cells tile the box, points reach the cell that holds them, a cut decomposition keeps the
edges, and bad cuts are one ConfigError naming the field."""
from __future__ import annotations

import numpy as np
import pytest

from ddpinn.decomposition import decompose
from ddpinn.decomposition.cut import cut_decomposition
from ddpinn.decomposition.locate import locate
from ddpinn.geometry import Box, Difference, Disk, Rectangle
from ddpinn.io.config import ConfigError, load
from ddpinn.problem import build_problem

from tests.unit.test_config import edit


def test_cells_end_at_the_cuts_and_tile_the_box():
    box = Box((-1.0, 0.0, 2.0), (1.0, 1.0, 3.0), ("x", "y", "t"))
    d = decompose(box, [4, 1, 3], time_axis=2, cuts=[[-0.3, -0.05, 0.6], None, [2.1, 2.15]])
    assert [e.tolist() for e in d.edges] == [[-1.0, -0.3, -0.05, 0.6, 1.0], [0.0, 1.0],
                                           [2.0, 2.1, 2.15, 3.0]]
    assert sum(sd.box.volume for sd in d.subdomains) == pytest.approx(box.volume)
    for sd in d.subdomains:
        for a in range(3):
            assert sd.box.lower[a] == d.edges[a][sd.index[a]]
            assert sd.box.upper[a] == d.edges[a][sd.index[a] + 1]
    for itf in d.interfaces:  # every interface sits on a cut
        assert itf.coord_lower in d.edges[itf.axis][1:-1]


def test_points_reach_the_cell_that_holds_them():
    box = Box((0.0, 0.0), (1.0, 2.0), ("x", "y"))
    d = decompose(box, [3, 2], cuts=[[0.1, 0.15], [1.7]])
    pts = np.random.default_rng(0).uniform([0, 0], [1, 2], (2000, 2))
    pts = np.concatenate([pts, [[0.1, 1.7], [0.15, 0.0], [1.0, 2.0]]])  # on cuts and corners
    sid = locate(pts, d)
    lo, hi = d.lower[sid], d.upper[sid]
    assert np.all(lo <= pts) and np.all((pts < hi) | (hi == np.asarray(box.upper)))
    # a point on a cut goes to the upper side, as on a uniform grid
    assert d.subdomains[int(sid[-3])].index == (1, 1)


def test_a_cut_decomposition_keeps_the_edges():
    shape = Difference(Rectangle([0, 0], [1, 1]), Disk([0.5, 0.5], 0.2))
    d = decompose(Box((0.0, 0.0), (1.0, 1.0), ("x", "y")), [3, 3],
                  cuts=[[0.45, 0.55], [0.3, 0.7]])
    c = cut_decomposition(d, shape)
    assert all(np.array_equal(a, b) for a, b in zip(c.edges, d.edges))
    pts = np.random.default_rng(1).uniform(0, 1, (500, 2))
    pts = pts[shape.inside(pts)]
    sid = locate(pts, c)
    assert np.all(c.lower[sid] <= pts) and np.all(pts <= c.upper[sid])


def test_the_case_file_sets_the_cuts(poisson_toml):
    path = edit(poisson_toml, "grid", "grid = [3, 2]\ncuts = { x = [0.2, 0.3] }")
    problem = build_problem(load(path))
    assert problem.decomposition.edges[0].tolist() == [0.0, 0.2, 0.3, 1.0]
    assert problem.decomposition.edges[1].tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("cuts, words", [
    ("{ x = [0.3, 0.2] }", ["decomposition.cuts.x", "increase strictly"]),
    ("{ x = [0.2] }", ["decomposition.cuts.x", "needs 2 inner cut positions"]),
    ("{ z = [0.2, 0.3] }", ["decomposition.cuts.z", "names no axis", "x, y"]),
    ("{ x = [0.0, 0.3] }", ["decomposition.cuts", "strictly inside [0, 1]"]),
    ("{ x = [0.2, 1.5] }", ["decomposition.cuts", "strictly inside [0, 1]"]),
    ('{ x = ["a", 0.3] }', ["decomposition.cuts.x", "list of numbers"]),
    ("[0.2, 0.3]", ["decomposition.cuts", "expected a table"]),
])
def test_bad_cuts_name_the_field(poisson_toml, cuts, words):
    path = edit(poisson_toml, "grid", f"grid = [3, 2]\ncuts = {cuts}")
    with pytest.raises(ConfigError) as exc:
        build_problem(load(path))
    for w in words:
        assert w in str(exc.value), str(exc.value)

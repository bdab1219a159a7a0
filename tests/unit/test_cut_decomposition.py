"""Cut-cell decompositions (grid cells and interfaces that meet a shape) and the weighted
partition of their subdomains over ranks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ddpinn.decomposition import cut_decomposition, decompose, partition_weighted
from ddpinn.geometry import Box, Difference, Disk, Polygon, Rectangle, Union, shape_from_spec

DFG = {"type": "difference", "of": [
    {"type": "rectangle", "lower": [0.0, 0.0], "upper": [2.2, 0.41],
     "tags": {"x_lower": "inlet", "x_upper": "outlet", "y_lower": "wall", "y_upper": "wall"}},
    {"type": "disk", "center": [0.2, 0.2], "radius": 0.05, "tag": "cylinder"}]}
L_SHAPE = Polygon([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]])


def grid_of(shape, grid, time=None):
    lower, upper, names = list(shape.lower), list(shape.upper), list("xyz"[:shape.dim])
    if time is not None:
        lower, upper, names = lower + [time[0]], upper + [time[1]], names + ["t"]
    return decompose(Box(tuple(lower), tuple(upper), tuple(names)), grid,
                     time_axis=shape.dim if time is not None else None)


def cell_volumes(decomp, space):
    return np.prod((decomp.upper - decomp.lower)[:, space], axis=1)


def check_consistent(cut, grid_decomp, shape, space):
    """Dense sids, interfaces between kept cells with faces in the domain, volumes add up."""
    assert [sd.sid for sd in cut.subdomains] == list(range(cut.n_subdomains))
    assert [itf.iid for itf in cut.interfaces] == list(range(len(cut.interfaces)))
    assert cut.interface_sids.min() >= 0 and cut.interface_sids.max() < cut.n_subdomains
    for itf, (lo, up) in zip(cut.interfaces, cut.interface_sids):
        assert (itf.lower, itf.upper) == (lo, up)
        assert cut.subdomains[lo].index == tuple(cut.index[lo])
    assert np.all(cut.volume_fraction > 0) and np.all(cut.interface_fraction > 0)
    area = float(np.sum(cut.volume_fraction * cell_volumes(cut, space)))
    whole = float(np.sum([shape.volume_fraction(grid_decomp.lower[s, space],
                                                grid_decomp.upper[s, space])
                          * cell_volumes(grid_decomp, space)[s]
                          for s in range(grid_decomp.n_subdomains)]))
    assert area == pytest.approx(whole, rel=1e-12)
    # Every grid interface between kept cells whose face meets the domain is kept.
    kept = {tuple(i) for i in cut.index[cut.interface_sids].reshape(len(cut.interfaces), -1)}
    cells = {tuple(i) for i in cut.index}
    for iid, (lo, up) in enumerate(grid_decomp.interface_sids):
        a = grid_decomp.interface_axis[iid]
        pair = tuple(np.concatenate([grid_decomp.index[lo], grid_decomp.index[up]]))
        if a not in space or not {tuple(grid_decomp.index[lo]),
                                  tuple(grid_decomp.index[up])} <= cells:
            assert pair not in kept or a not in space
            continue
        f = shape.face_fraction(grid_decomp.lower[lo, space], grid_decomp.upper[lo, space],
                                space.index(a), grid_decomp.upper[lo, a])
        assert (pair in kept) == (f > 0), (pair, f)


def test_dfg_channel_keeps_every_cell():
    shape = shape_from_spec(DFG)
    grid = grid_of(shape, [8, 2])
    cut = cut_decomposition(grid, shape)
    assert cut.n_subdomains == 16 and len(cut.interfaces) == len(grid.interfaces)
    np.testing.assert_array_equal(cut.index, grid.index)
    check_consistent(cut, grid, shape, [0, 1])
    area = float(np.sum(cut.volume_fraction * cell_volumes(cut, [0, 1])))
    assert area == pytest.approx(2.2 * 0.41 - math.pi * 0.05 ** 2, rel=1e-3)
    assert cut.boundary_measure.sum() == pytest.approx(2 * 2.61 + 2 * math.pi * 0.05,
                                                       rel=1e-2)
    assert np.sum(cut.volume_fraction == 1.0) == 14  # only the two cells at the cylinder cut
    assert not cut.boundary_face_mask().any()
    assert cut.boundary_faces(0) == []


def test_l_shape_drops_a_cell_and_its_interfaces():
    grid = grid_of(L_SHAPE, [2, 2])
    cut = cut_decomposition(grid, L_SHAPE)
    assert cut.n_subdomains == 3
    np.testing.assert_array_equal(cut.index, [[0, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(cut.volume_fraction, [1.0, 1.0, 1.0])
    assert len(grid.interfaces) == 4 and len(cut.interfaces) == 2
    np.testing.assert_array_equal(cut.interface_sids, [[0, 2], [0, 1]])
    assert cut.neighbours(0) == [1, 2] and cut.neighbours(1) == [0]
    check_consistent(cut, grid, L_SHAPE, [0, 1])
    np.testing.assert_allclose(cut.boundary_measure, [2.0, 3.0, 3.0])


def test_space_time_keeps_time_interfaces_and_the_initial_face():
    grid = grid_of(L_SHAPE, [2, 2, 3], time=(0.0, 1.0))
    cut = cut_decomposition(grid, L_SHAPE, time_axis=2)
    assert cut.n_subdomains == 9
    kinds = [itf.kind for itf in cut.interfaces]
    assert kinds.count("time") == 6 and kinds.count("space") == 6
    check_consistent(cut, grid, L_SHAPE, [0, 1])
    mask = cut.boundary_face_mask(time_axis=2)
    first_slab = cut.index[:, 2] == 0
    np.testing.assert_array_equal(mask[:, 2, 0], first_slab)
    assert mask.sum() == first_slab.sum() == 3
    assert cut.boundary_faces(0, time_axis=2) == [(2, -1)]
    assert cut.boundary_faces(1, time_axis=2) == []


def test_interface_inside_a_hole_is_dropped():
    slot = Difference(Rectangle([0, 0], [3, 1]), Rectangle([0.8, -0.1], [1.2, 1.1]))
    grid = grid_of(slot, [3, 1])
    cut = cut_decomposition(grid, slot)
    assert cut.n_subdomains == 3
    np.testing.assert_allclose(cut.volume_fraction, [0.8, 0.8, 1.0], atol=5e-3)
    np.testing.assert_array_equal(cut.interface_sids, [[1, 2]])
    check_consistent(cut, grid, slot, [0, 1])


def test_ring_cells_and_interfaces():
    ring = Difference(Disk([0, 0], 1.0), Disk([0, 0], 0.5))
    grid = grid_of(ring, [4, 4])
    cut = cut_decomposition(grid, ring)
    assert cut.n_subdomains == 16  # the hole cuts the four centre cells, drops none
    check_consistent(cut, grid, ring, [0, 1])
    area = float(np.sum(cut.volume_fraction * cell_volumes(cut, [0, 1])))
    assert area == pytest.approx(math.pi * (1 - 0.5 ** 2), rel=5e-3)
    # The faces x = 0 and y = 0 between the centre cells lie inside the hole: dropped.
    assert len(cut.interfaces) == len(grid.interfaces) - 4


def test_errors():
    grid = decompose(Box((5.0, 5.0), (6.0, 6.0), ("x", "y")), [2, 2])
    with pytest.raises(ValueError, match="no subdomain of the grid meets"):
        cut_decomposition(grid, L_SHAPE)
    with pytest.raises(ValueError, match="2 space dimensions"):
        cut_decomposition(grid, L_SHAPE, time_axis=1)


# -- weighted partition --------------------------------------------------------------------
def test_weighted_partition_every_rank_owns_something():
    rng = np.random.default_rng(0)
    for n_sub in (1, 5, 16, 37):
        w = rng.random(n_sub) * 10
        for n_ranks in range(1, n_sub + 1):
            owner = partition_weighted(w, n_ranks)
            assert owner.shape == (n_sub,)
            assert np.array_equal(np.unique(owner), np.arange(n_ranks))
            # contiguous runs along the sid path
            assert np.all(np.diff(owner) >= 0)
    with pytest.raises(ValueError, match="between 1 and 3 ranks"):
        partition_weighted([1, 1, 1], 4)
    with pytest.raises(ValueError, match="non-negative"):
        partition_weighted([1, -1], 1)
    np.testing.assert_array_equal(partition_weighted([0, 0, 0, 0], 2), [0, 0, 1, 1])


def test_weighted_partition_beats_equal_counts_on_a_skewed_example():
    w = np.array([8.0, 8.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    owner = partition_weighted(w, 3)
    loads = np.bincount(owner, weights=w)
    equal = np.bincount(np.repeat(np.arange(3), 4), weights=w)
    assert loads.max() < equal.max()
    assert loads.max() == pytest.approx(9.0)  # [8], [8, 1], [1 x 9]


def connected(cells: set) -> bool:
    seen, todo = set(), [next(iter(cells))]
    while todo:
        c = todo.pop()
        if c not in seen:
            seen.add(c)
            todo += [n for n in cells if sum(abs(a - b) for a, b in zip(n, c)) == 1]
    return seen == cells


def test_weighted_partition_of_a_cut_decomposition():
    grid = grid_of(L_SHAPE, [6, 6])
    cut = cut_decomposition(grid, L_SHAPE)
    points = np.round(1000 * cut.volume_fraction)
    for n_ranks in (1, 2, 3, 4, 7, 27):
        owner = partition_weighted(points, n_ranks, index=cut.index)
        assert np.array_equal(np.unique(owner), np.arange(n_ranks))
        loads = np.bincount(owner, weights=points)
        assert loads.max() <= points.sum() / n_ranks + points.max()
    # Without holes the snake's runs are connected blocks of cells.
    full = grid_of(Rectangle([0, 0], [5, 3]), [5, 3])
    w = np.random.default_rng(3).random(15)
    for n_ranks in (2, 3, 4, 6):
        owner = partition_weighted(w, n_ranks, index=full.index)
        for r in range(n_ranks):
            assert connected({tuple(i) for i in full.index[owner == r]})


def test_locate_in_a_cut_decomposition():
    from ddpinn.decomposition.locate import locate

    grid = grid_of(L_SHAPE, [2, 2])
    cut = cut_decomposition(grid, L_SHAPE)
    pts = np.array([[0.5, 0.5], [0.5, 1.5], [1.5, 0.5], [1.0, 1.0], [1.0, 0.5], [1.5, 1.5]])
    # The dropped cell (1, 1) sends its points to the nearest kept cell, the smaller sid on
    # a tie; points on an interface go to its upper side, as in a grid decomposition.
    np.testing.assert_array_equal(locate(pts, cut), [0, 1, 2, 1, 2, 1])
    np.testing.assert_array_equal(cut.grid_lookup, [0, 1, 2, 1])
    # Two disks with an empty column of cells between them: the edges stay the grid's.
    pair = Union(Disk([0.5, 0.5], 0.5), Disk([2.5, 0.5], 0.5))
    cut = cut_decomposition(grid_of(pair, [3, 1]), pair)
    assert cut.n_subdomains == 2 and len(cut.interfaces) == 0
    np.testing.assert_array_equal(locate(np.array([[0.5, 0.5], [2.5, 0.5], [1.4, 0.5]]), cut),
                                  [0, 1, 0])
    # Cutting again keeps what is there.
    again = cut_decomposition(cut, pair)
    np.testing.assert_array_equal(again.index, cut.index)
    np.testing.assert_array_equal(again.grid_lookup, cut.grid_lookup)

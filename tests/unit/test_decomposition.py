"""Geometry boxes, grid decomposition (subdomains, interfaces, boundary faces) and the
sid -> rank partition. Everything here is rank-independent and needs no MPI."""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from ddpinn.decomposition import decompose, owned_sids, partition
from ddpinn.geometry import Box, Face, grid_points, sample_box, sample_face

NAMES = ("x", "y", "z", "t")


def unit_box(dim, lower=None, upper=None):
    lower = tuple(float(v) for v in (lower or [0.0] * dim))
    upper = tuple(float(v) for v in (upper or [1.0] * dim))
    return Box(lower, upper, NAMES[:dim])


def expected_interfaces(grid, periodic=None):
    """sum over axes of (g_a - 1) * prod(other g), plus prod(other g) per periodic axis
    with more than one cell (the wrap-around interfaces)."""
    periodic = periodic or [False] * len(grid)
    total = 0
    for a, g in enumerate(grid):
        others = int(np.prod([h for b, h in enumerate(grid) if b != a]))
        total += (g - 1) * others
        if periodic[a] and g > 1:
            total += others
    return total


# -- Box -------------------------------------------------------------------------------------
def test_box_properties():
    box = Box((0.0, -1.0, 2.0), (2.0, 1.0, 5.0), ("x", "y", "t"))
    assert box.dim == 3
    np.testing.assert_array_equal(box.width, [2.0, 2.0, 3.0])
    assert box.volume == pytest.approx(12.0)
    assert box.axis("t") == 2
    faces = box.faces()
    assert len(faces) == 6
    assert faces[0] == Face(0, -1) and faces[1] == Face(0, +1)
    assert Face(2, +1).coordinate(box) == 5.0
    assert Face(1, -1).coordinate(box) == -1.0
    assert Face(0, -1).area(box) == pytest.approx(6.0)


@pytest.mark.parametrize("lower,upper,names", [
    ((0.0, 1.0), (1.0, 1.0), ("x", "y")),       # zero width
    ((0.0,), (-1.0,), ("x",)),                   # upper < lower
    ((0.0, 0.0), (1.0,), ("x", "y")),            # length mismatch
    ((0.0,), (1.0,), ("x", "y")),
])
def test_box_rejects_invalid(lower, upper, names):
    with pytest.raises(ValueError):
        Box(lower, upper, names)


def test_sampling_stays_inside_and_on_faces():
    box = unit_box(3, [-1, 0, 2], [1, 0.5, 3])
    rng = np.random.default_rng(0)
    pts = sample_box(box, 500, rng)
    assert pts.shape == (500, 3)
    assert np.all(pts >= np.asarray(box.lower)) and np.all(pts <= np.asarray(box.upper))
    on = sample_face(box, Face(1, +1), 50, rng)
    assert np.all(on[:, 1] == 0.5)
    assert np.all(on >= np.asarray(box.lower)) and np.all(on <= np.asarray(box.upper))
    axes, grid = grid_points(box, [3, 4, 2])
    assert grid.shape == (24, 3)
    assert [len(a) for a in axes] == [3, 4, 2]
    np.testing.assert_array_equal(grid[0], box.lower)
    np.testing.assert_array_equal(grid[-1], box.upper)
    # C order: last axis fastest.
    assert grid[1, 2] == 3.0 and grid[1, 1] == 0.0


# -- decompose ---------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,count", [
    ([4], 3), ([2, 2], 4), ([3, 2], 7), ([2, 2, 2, 1], 12), ([4, 4, 4, 2], 352),
])
def test_interface_counts(grid, count):
    d = decompose(unit_box(len(grid)), grid)
    assert count == expected_interfaces(grid)
    assert len(d.interfaces) == count
    assert d.n_subdomains == int(np.prod(grid))
    assert [itf.iid for itf in d.interfaces] == list(range(count))
    assert not any(itf.wrap for itf in d.interfaces)
    # Every pair of grid neighbours shares exactly one interface.
    pairs = {(itf.lower, itf.upper) for itf in d.interfaces}
    assert len(pairs) == count


@pytest.mark.parametrize("grid", [[4], [2, 2], [3, 2], [2, 2, 2, 1], [4, 4, 4, 2]])
def test_subdomains_tile_the_box(grid):
    box = unit_box(len(grid), [-1, 0, 2, 0][: len(grid)], [1, 3, 3, 0.5][: len(grid)])
    d = decompose(box, grid)
    assert sum(sd.box.volume for sd in d.subdomains) == pytest.approx(box.volume)
    for sid, sd in enumerate(d.subdomains):
        assert sd.sid == sid
        # C order, last axis fastest.
        assert sd.index == tuple(int(i) for i in np.unravel_index(sid, grid))
        for a in range(box.dim):
            w = box.width[a] / grid[a]
            assert sd.box.lower[a] == pytest.approx(box.lower[a] + sd.index[a] * w)
            assert sd.box.upper[a] == pytest.approx(box.lower[a] + (sd.index[a] + 1) * w)


@pytest.mark.parametrize("grid", [[4], [2, 2], [3, 2], [2, 2, 2, 1], [4, 4, 4, 2]])
def test_interface_geometry(grid):
    d = decompose(unit_box(len(grid)), grid)
    for itf in d.interfaces:
        lo, up = d.subdomains[itf.lower], d.subdomains[itf.upper]
        a = itf.axis
        assert up.index[a] == lo.index[a] + 1
        assert all(lo.index[b] == up.index[b] for b in range(len(grid)) if b != a)
        assert itf.coord_lower == itf.coord_upper == lo.box.upper[a] == up.box.lower[a]
        assert itf.coord(itf.lower) == itf.coord(itf.upper) == itf.coord_lower
        assert itf.other(itf.lower) == itf.upper and itf.other(itf.upper) == itf.lower
        assert itf.sids == (itf.lower, itf.upper)
        for b in range(len(grid)):
            if b != a:  # tangential extent of the face = the subdomain's extent
                assert itf.face_box.lower[b] == lo.box.lower[b]
                assert itf.face_box.upper[b] == lo.box.upper[b]
        assert itf.kind == "space"


def test_neighbours_are_symmetric_and_match_grid():
    grid = [3, 2, 2]
    d = decompose(unit_box(3), grid)
    for sd in d.subdomains:
        expected = set()
        for a in range(3):
            for step in (-1, 1):
                idx = list(sd.index)
                idx[a] += step
                if 0 <= idx[a] < grid[a]:
                    expected.add(int(np.ravel_multi_index(idx, grid)))
        assert set(d.neighbours(sd.sid)) == expected
        assert d.neighbours(sd.sid) == sorted(expected)
        for n in d.neighbours(sd.sid):
            assert sd.sid in d.neighbours(n)
        iids = [itf.iid for itf in d.interfaces_of(sd.sid)]
        assert iids == sorted(iids) and len(iids) == len(expected)


@pytest.mark.parametrize("grid,periodic", [
    ([4], [True]),
    ([2, 2], [True, False]),
    ([3, 2], [True, True]),
    ([1, 3], [True, True]),          # one cell along a periodic axis: no self-interface
    ([4, 4, 4, 2], [True, False, True, False]),
])
def test_periodic_wrap_interfaces(grid, periodic):
    box = unit_box(len(grid), [0.0, -1.0, 0.0, 0.0][: len(grid)],
                   [2 * math.pi, 1.0, 3.0, 1.0][: len(grid)])
    d = decompose(box, grid, periodic)
    assert len(d.interfaces) == expected_interfaces(grid, periodic)
    wraps = [itf for itf in d.interfaces if itf.wrap]
    n_wrap = sum(int(np.prod(grid)) // g for g, p in zip(grid, periodic) if p and g > 1)
    assert len(wraps) == n_wrap
    for itf in wraps:
        a = itf.axis
        assert periodic[a]
        assert d.subdomains[itf.lower].index[a] == grid[a] - 1
        assert d.subdomains[itf.upper].index[a] == 0
        assert itf.coord_lower == box.upper[a]
        assert itf.coord_upper == box.lower[a]
        assert itf.coord(itf.lower) == box.upper[a] and itf.coord(itf.upper) == box.lower[a]
        assert itf.seed_key()[-1] == 1
    for itf in d.interfaces:
        assert itf.lower != itf.upper


def test_boundary_faces_space_time_and_periodic():
    box = unit_box(2)
    # (x, t), no periodic axis: every x face, only the initial time face.
    d = decompose(box, [2, 3], time_axis=1)
    faces = {sd.sid: sorted(d.boundary_faces(sd.sid, 1)) for sd in d.subdomains}
    assert faces[0] == [(0, -1), (1, -1)]          # (x0, t0)
    assert faces[1] == [(0, -1)]                   # (x0, t1)
    assert faces[2] == [(0, -1)]                   # (x0, t2): no final time face
    assert faces[3] == [(0, +1), (1, -1)]          # (x1, t0)
    assert faces[5] == [(0, +1)]
    # Periodic x: only the initial face survives.
    dp = decompose(box, [2, 3], [True, False], time_axis=1)
    assert {sd.sid: dp.boundary_faces(sd.sid, 1) for sd in dp.subdomains} == \
        {0: [(1, -1)], 1: [], 2: [], 3: [(1, -1)], 4: [], 5: []}
    # Without a time axis both ends of every axis count.
    ds = decompose(box, [1, 1])
    assert sorted(ds.boundary_faces(0)) == [(0, -1), (0, 1), (1, -1), (1, 1)]


def test_boundary_face_total_matches_global_boundary():
    grid = [3, 2, 4]
    d = decompose(unit_box(3), grid, time_axis=2)
    total = sum(len(d.boundary_faces(s, 2)) for s in range(d.n_subdomains))
    # x faces: 2 * (2*4), y faces: 2 * (3*4), t: only the initial face (3*2).
    assert total == 2 * 8 + 2 * 12 + 6


def test_time_interfaces_have_kind_time():
    d = decompose(unit_box(3), [2, 2, 3], time_axis=2)
    kinds = {}
    for itf in d.interfaces:
        kinds.setdefault(itf.kind, []).append(itf.axis)
        assert itf.kind == ("time" if itf.axis == 2 else "space")
    assert len(kinds["time"]) == 2 * 4     # (3 - 1) * 2 * 2
    assert len(kinds["space"]) == 3 * 2 + 2 * 3   # x: 1*2*3, y: 2*1*3


@pytest.mark.parametrize("grid", [[2, 0], [0], [2, -1]])
def test_decompose_rejects_non_positive_grid(grid):
    with pytest.raises(ValueError, match="positive"):
        decompose(unit_box(len(grid)), grid)


def test_decompose_rejects_wrong_grid_length():
    with pytest.raises(ValueError, match="3 entries"):
        decompose(unit_box(2), [2, 2, 2])


# -- partition ---------------------------------------------------------------------------------
def block_is_connected(decomp, block) -> bool:
    block = set(block)
    start = min(block)
    seen, queue = {start}, deque([start])
    while queue:
        s = queue.popleft()
        for n in decomp.neighbours(s):
            if n in block and n not in seen:
                seen.add(n)
                queue.append(n)
    return seen == block


PARTITION_GRIDS = [[8], [2, 2, 2], [4, 4, 4, 2], [3, 5]]


@pytest.mark.parametrize("grid", PARTITION_GRIDS + [[7], [5, 5], [3, 3, 3]])
def test_partition_covers_every_rank_and_is_balanced(grid):
    S = int(np.prod(grid))
    for n_ranks in range(1, S + 1):
        owner = partition(grid, n_ranks)
        assert owner.shape == (S,)
        assert owner.min() == 0 and owner.max() == n_ranks - 1
        sizes = [len(owned_sids(owner, r)) for r in range(n_ranks)]
        assert min(sizes) >= 1, (n_ranks, sizes)
        assert sum(sizes) == S
        # Measured: recursive bisection never differs by more than one subdomain.
        assert max(sizes) - min(sizes) <= 1, (n_ranks, sizes)
        if S % n_ranks == 0:
            assert len(set(sizes)) == 1, (n_ranks, sizes)
        # owned_sids is the inverse of owner, ascending.
        for r in range(n_ranks):
            blk = owned_sids(owner, r)
            assert blk == sorted(blk) and all(owner[s] == r for s in blk)


@pytest.mark.parametrize("grid", [
    [8], [7], [2, 2], [4, 4], [2, 2, 2], [4, 4, 4, 2], [3, 5], [3, 2], [5, 3, 2],
])
def test_partition_blocks_are_connected(grid):
    d = decompose(unit_box(len(grid)), grid)
    bad = []
    for n_ranks in range(1, d.n_subdomains + 1):
        owner = partition(grid, n_ranks)
        for r in range(n_ranks):
            blk = owned_sids(owner, r)
            if not block_is_connected(d, blk):
                bad.append((n_ranks, r, blk))
        if len(bad) >= 3:
            break
    assert not bad, f"{len(bad)} disconnected blocks, first: {bad[:3]}"


def test_partition_power_of_two_is_exactly_balanced():
    grid = [4, 4, 4, 2]
    for n_ranks in (1, 2, 4, 8, 16, 32, 64, 128):
        sizes = np.bincount(partition(grid, n_ranks), minlength=n_ranks)
        assert np.all(sizes == 128 // n_ranks)


@pytest.mark.parametrize("grid", PARTITION_GRIDS)
def test_partition_is_deterministic(grid):
    S = int(np.prod(grid))
    counts = sorted({1, 2, 3, 5, 7, S // 3, S // 2, S - 1, S} - {0})
    first = [partition(grid, r).copy() for r in counts]
    # Interleave other calls: nothing global may leak between calls.
    partition([5, 5], 7)
    second = [partition(tuple(grid), r) for r in reversed(counts)][::-1]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(partition(grid, 1), np.zeros(S, dtype=int))
    # One subdomain per rank: a permutation of the ranks.
    np.testing.assert_array_equal(np.sort(partition(grid, S)), np.arange(S))


@pytest.mark.parametrize("grid,n_ranks", [([8], 9), ([2, 2], 5), ([3, 5], 16), ([2, 2], 0),
                                          ([2, 2], -1)])
def test_partition_rejects_bad_rank_count(grid, n_ranks):
    S = int(np.prod(grid))
    with pytest.raises(ValueError, match=f"between 1 and {S}"):
        partition(grid, n_ranks)


@pytest.mark.parametrize("grid", [[2, 0], [0], [0, 3, 2]])
def test_partition_rejects_empty_grid(grid):
    with pytest.raises(ValueError):
        partition(grid, 1)

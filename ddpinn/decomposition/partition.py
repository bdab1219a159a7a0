"""Partition of subdomains over ranks: a pure function ``sid -> rank``.

Recursive coordinate bisection over the grid cells: each cut goes across the axis with the
most cells, in proportion to the ranks on each side. While cuts fall on whole slabs every
block is a box. When a proportional cut cannot (e.g. 8 cells on 3 ranks), the block is
ordered along a boustrophedon ("snake") path, whose consecutive cells are always neighbours,
and split into contiguous runs of it; so every rank's block stays connected and block sizes
differ by at most one.

Cut-cell decompositions, whose cells carry different numbers of points, use
:func:`partition_weighted`: contiguous runs of the snake path balancing the summed weights.
"""
from __future__ import annotations

import numpy as np


def snake_order(index: np.ndarray, axes) -> np.ndarray:
    """Order of the cells ``index`` (n, dim) of a box along a boustrophedon path that runs
    slowest along ``axes[0]``; consecutive cells in that order are grid neighbours."""
    keys = []
    position = np.zeros(len(index), dtype=np.int64)  # place along the path of the outer axes
    for a in axes:
        i = index[:, a] - index[:, a].min()
        # Each step of the outer path reverses this axis, so the path turns instead of jumping.
        k = np.where(position % 2 == 0, i, i.max() - i)
        keys.append(k)
        position = position * (i.max() + 1) + k
    return np.lexsort(keys[::-1])


def partition(grid, n_ranks: int) -> np.ndarray:
    """Map every subdomain id to a rank.

    Parameters
    ----------
    grid : sequence of int, shape (dim,)
    n_ranks : int
        1 <= n_ranks <= prod(grid).

    Returns
    -------
    ndarray of int, shape (prod(grid),)
        ``owner[sid]`` is the rank of subdomain ``sid``; every rank owns a connected block.
    """
    grid = tuple(int(g) for g in grid)
    n_sub = int(np.prod(grid))
    if not 1 <= n_ranks <= n_sub:
        raise ValueError(f"cannot place {n_sub} subdomains on {n_ranks} ranks: "
                         f"use between 1 and {n_sub} ranks (one subdomain at least per rank)")
    index = np.indices(grid).reshape(len(grid), n_sub).T  # (S, dim), C order like sids
    owner = np.empty(n_sub, dtype=int)

    def split_path(path: np.ndarray, first_rank: int, ranks: int):
        # Contiguous runs of a snake path; sizes differ by at most one.
        bounds = [(len(path) * r) // ranks for r in range(ranks + 1)]
        for r in range(ranks):
            owner[path[bounds[r]:bounds[r + 1]]] = first_rank + r

    def bisect(sids: np.ndarray, first_rank: int, ranks: int):
        if ranks == 1:
            owner[sids] = first_rank
            return
        spans = [len(np.unique(index[sids, a])) for a in range(len(grid))]
        left_ranks = ranks // 2
        n_left = (len(sids) * left_ranks) // ranks
        for axis in sorted(range(len(grid)), key=lambda a: -spans[a]):
            slab = len(sids) // spans[axis]
            if spans[axis] > 1 and n_left % slab == 0 and \
                    len(sids) * left_ranks % ranks == 0:
                order = sids[np.lexsort((sids, index[sids, axis]))]
                bisect(np.sort(order[:n_left]), first_rank, left_ranks)
                bisect(np.sort(order[n_left:]), first_rank + left_ranks, ranks - left_ranks)
                return
        axes = sorted(range(len(grid)), key=lambda a: -spans[a])
        split_path(sids[snake_order(index[sids], axes)], first_rank, ranks)

    bisect(np.arange(n_sub), 0, n_ranks)
    return owner


def owned_sids(owner: np.ndarray, rank: int) -> list:
    """Subdomain ids owned by ``rank``, ascending."""
    return [int(s) for s in np.flatnonzero(owner == rank)]


def _runs(prefix: np.ndarray, bound: float, n_ranks: int):
    """Greedy cuts of a path with cumulative weights ``prefix`` (S+1,) into ``n_ranks``
    non-empty runs of weight <= bound each: (cut positions (n_ranks + 1,), feasible)."""
    n = len(prefix) - 1
    cuts, start = [0], 0
    for r in range(n_ranks - 1):
        end = int(np.searchsorted(prefix, prefix[start] + bound, side="right")) - 1
        end = min(max(end, start + 1), n - (n_ranks - 1 - r))  # one cell at least per rank
        cuts.append(end)
        start = end
    cuts.append(n)
    return cuts, prefix[n] - prefix[start] <= bound


def partition_weighted(weights, n_ranks: int, index: np.ndarray | None = None) -> np.ndarray:
    """Map subdomains to ranks balancing the sum of their weights.

    Every rank gets one contiguous run of the subdomains along a path, the runs chosen to
    make the heaviest rank as light as possible (bisection on that bound with a greedy
    check, exact for contiguous runs).

    Parameters
    ----------
    weights : array of float, shape (S,)
        Non-negative cost of every subdomain (e.g. its number of points); all zero counts
        every subdomain once.
    n_ranks : int
        1 <= n_ranks <= S.
    index : ndarray of int, shape (S, dim), optional
        Grid index of every subdomain (``Decomposition.index``). When given the path is the
        boustrophedon ("snake") order of the grid, slowest along the axis with the most
        cells, so consecutive cells are neighbours where the grid has no holes; otherwise
        the sid order.

    Returns
    -------
    ndarray of int, shape (S,) -- ``owner[sid]``
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be a 1-D array of finite non-negative numbers")
    n_sub = len(w)
    if not 1 <= n_ranks <= n_sub:
        raise ValueError(f"cannot place {n_sub} subdomains on {n_ranks} ranks: "
                         f"use between 1 and {n_sub} ranks (one subdomain at least per rank)")
    if w.sum() == 0:
        w = np.ones(n_sub)
    if index is None:
        path = np.arange(n_sub)
    else:
        index = np.asarray(index)
        if index.shape[0] != n_sub:
            raise ValueError(f"index has {index.shape[0]} rows for {n_sub} weights")
        spans = [len(np.unique(index[:, a])) for a in range(index.shape[1])]
        path = snake_order(index, sorted(range(index.shape[1]), key=lambda a: -spans[a]))
    prefix = np.concatenate([[0.0], np.cumsum(w[path])])
    low, high = max(w.max(), prefix[-1] / n_ranks), prefix[-1]
    for _ in range(100):  # bisection on the heaviest rank's load
        if high - low <= 1e-12 * high:
            break
        mid = 0.5 * (low + high)
        if _runs(prefix, mid, n_ranks)[1]:
            high = mid
        else:
            low = mid
    cuts, _ = _runs(prefix, high, n_ranks)
    owner = np.empty(n_sub, dtype=int)
    for r in range(n_ranks):
        owner[path[cuts[r]:cuts[r + 1]]] = r
    return owner


def assign_owners(decomposition, n_ranks: int, work=None) -> np.ndarray:
    """``sid -> rank`` of any decomposition: :func:`partition` of the grid for a box, or,
    for a decomposition cut by a shape (cells dropped), runs of the snake order balanced
    by ``work`` (S,), the points of each subdomain (default: its inside volume fraction)."""
    if getattr(decomposition, "volume_fraction", None) is None:
        return partition(decomposition.grid, n_ranks)
    weights = decomposition.volume_fraction if work is None else work
    return partition_weighted(np.asarray(weights, float), n_ranks, decomposition.index)

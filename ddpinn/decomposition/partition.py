"""Partition of subdomains over ranks: a pure function ``sid -> rank``.

Recursive coordinate bisection over the grid cells: each cut goes across the axis with the
most cells, in proportion to the ranks on each side. While cuts fall on whole slabs every
block is a box. When a proportional cut cannot (e.g. 8 cells on 3 ranks), the block is
ordered along a boustrophedon ("snake") path, whose consecutive cells are always neighbours,
and split into contiguous runs of it; so every rank's block stays connected and block sizes
differ by at most one.
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


def assign_owners(decomposition, n_ranks: int, work=None) -> np.ndarray:
    """``sid -> rank`` of any decomposition: :func:`partition` of the grid for a box, or,
    for a decomposition cut by a shape (cells dropped), runs of the snake order balanced
    by ``work`` (S,), the points of each subdomain (default: its inside volume fraction)."""
    if getattr(decomposition, "volume_fraction", None) is None:
        return partition(decomposition.grid, n_ranks)
    from ddpinn.decomposition.cut import partition_weighted

    weights = decomposition.volume_fraction if work is None else work
    return partition_weighted(np.asarray(weights, float), n_ranks)

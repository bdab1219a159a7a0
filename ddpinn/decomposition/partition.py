"""Partition of subdomains over ranks: a pure function ``sid -> rank``.

Recursive coordinate bisection over the grid cells: each cut goes across the axis with
the most cells, in proportion to the ranks on each side, so every rank gets a compact block
of neighbouring subdomains and block sizes differ by at most one level of rounding.
"""
from __future__ import annotations

import numpy as np


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
        ``owner[sid]`` is the rank of subdomain ``sid``; ranks own contiguous blocks.
    """
    grid = tuple(int(g) for g in grid)
    n_sub = int(np.prod(grid))
    if not 1 <= n_ranks <= n_sub:
        raise ValueError(f"cannot place {n_sub} subdomains on {n_ranks} ranks: "
                         f"use between 1 and {n_sub} ranks (one subdomain at least per rank)")
    index = np.array(list(np.ndindex(*grid)), dtype=int).reshape(n_sub, len(grid))
    owner = np.empty(n_sub, dtype=int)

    def bisect(sids: np.ndarray, first_rank: int, ranks: int):
        if ranks == 1:
            owner[sids] = first_rank
            return
        spans = [len(np.unique(index[sids, a])) for a in range(len(grid))]
        axis = int(np.argmax(spans))
        # Stable order along the cut axis, ties broken by sid, so the split is unique.
        order = sids[np.lexsort((sids, index[sids, axis]))]
        left_ranks = ranks // 2
        n_left = (len(sids) * left_ranks) // ranks
        bisect(np.sort(order[:n_left]), first_rank, left_ranks)
        bisect(np.sort(order[n_left:]), first_rank + left_ranks, ranks - left_ranks)

    bisect(np.arange(n_sub), 0, n_ranks)
    return owner


def owned_sids(owner: np.ndarray, rank: int) -> list:
    """Subdomain ids owned by ``rank``, ascending."""
    return [int(s) for s in np.flatnonzero(owner == rank)]

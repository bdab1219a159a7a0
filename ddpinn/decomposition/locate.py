"""Which subdomain a point belongs to: a pure, rank-independent function of its coordinates.

The rule (FBPINNs style, on the cells of :func:`~ddpinn.decomposition.grid.decompose`): along
each axis a point belongs to the cell whose half-open interval ``[lower, upper)`` holds it, and
the last cell also takes its upper end. So a point exactly on an interface belongs to the
subdomain on the **upper side** (the larger coordinate, which has the larger sid); at an edge
or corner where several subdomains meet, to the upper side along every axis, i.e. the largest
sid among them. Points on the outer boundary belong to the cell they border (on a periodic
axis too: the top of the box belongs to the last cell, not to the first). The comparison uses
the cell bounds exactly as the decomposition stores them (``Decomposition.lower``), so it does
not depend on rounding in a division, on the partition or on the rank count.
"""
from __future__ import annotations

import numpy as np

# Points up to this fraction of an axis's length outside the box count as inside (and are
# evaluated where they are, by the boundary cell): coordinates written as text lose a few ulps.
OUTSIDE_TOLERANCE = 1e-9


def cell_edges(decomposition) -> list:
    """Inner cell edges of every axis, as the decomposition stores them.

    Parameters
    ----------
    decomposition : Decomposition

    Returns
    -------
    list of ndarray, length dim; entry ``a`` has shape ``(grid[a] - 1,)``, ascending: the
    lower bounds of cells 1 .. grid[a] - 1 along axis ``a``
    """
    # The grid's edges, not those of the cells present: a cut decomposition may lack whole
    # rows of cells.
    return [np.asarray(e)[1:-1] for e in decomposition.edges]


def locate_points(points: np.ndarray, inner_edges, grid) -> np.ndarray:
    """Subdomain id of every point (the upper side of an interface; see the module).

    Parameters
    ----------
    points : ndarray, shape (P, dim)
    inner_edges : list of ndarray, length dim, shapes (grid[a] - 1,)
        From :func:`cell_edges`.
    grid : sequence of int, shape (dim,)
        Cells per axis.

    Returns
    -------
    ndarray of int64, shape (P,)
        ``sid`` in C order over the grid (last axis fastest), as in ``decompose``. Points
        outside the box get the nearest boundary cell; check them with :func:`outside`.
    """
    points = np.asarray(points, dtype=np.float64)
    grid = tuple(int(g) for g in grid)
    if points.ndim != 2 or points.shape[1] != len(grid):
        raise ValueError(f"points must have shape (P, {len(grid)}), got {points.shape}")
    # Index along each axis = number of inner edges <= x: a point on an edge goes up.
    index = [np.searchsorted(np.asarray(e, np.float64), points[:, a], side="right")
             for a, e in enumerate(inner_edges)]
    if not len(points):
        return np.zeros(0, dtype=np.int64)
    return np.ravel_multi_index(tuple(index), grid).astype(np.int64)


def locate(points: np.ndarray, decomposition) -> np.ndarray:
    """:func:`locate_points` with the edges of ``decomposition``: (P, dim) -> (P,).

    In a cut decomposition a point of a dropped grid cell (outside the shape, or in a sliver
    of it too thin to keep) goes to the nearest kept cell; check points against the shape
    with ``decomposition.shape.inside``.
    """
    sid = locate_points(points, cell_edges(decomposition), decomposition.grid)
    lookup = decomposition.grid_lookup
    return sid if lookup is None else lookup[sid]


def outside(points: np.ndarray, lower, upper, tolerance: float = OUTSIDE_TOLERANCE) -> np.ndarray:
    """Which points lie outside the box by more than ``tolerance`` times an axis's length.

    Parameters
    ----------
    points : ndarray, shape (P, dim)
    lower, upper : sequence of float, shape (dim,)
    tolerance : float

    Returns
    -------
    ndarray of bool, shape (P,)
    """
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    slack = tolerance * (upper - lower)
    return np.any((points < lower - slack) | (points > upper + slack), axis=1)

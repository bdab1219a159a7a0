"""Local cubic interpolation on a rectilinear grid: on each axis the Lagrange polynomial
through the 4 grid lines around a point (two on each side; near an end of the axis, the 4 end
lines), taken as a tensor product over the axes.

The error is O(h^4) for smooth data where linear interpolation's is O(h^2); the interpolant is
continuous, not differentiable across grid lines. It is local on purpose: a value depends on
the 4^d nodes around its point only, so a block read with one grid line of margin beyond its
box (:meth:`ddpinn.data.netcdf_grid.NetcdfGrid.index_ranges`) gives the same numbers as the
whole file, bit for bit, whichever rank reads which part. (scipy's cubic
``RegularGridInterpolator`` is a global spline, in which every node moves every value.) At a
node the weights are exactly 1 and 0: nodes are reproduced exactly.
"""
from __future__ import annotations

import itertools

import numpy as np

#: Lines per axis of the stencil (fewer on an axis with fewer lines: 3 quadratic, 2 linear).
STENCIL = 4


def axis_stencil(coords: np.ndarray, x: np.ndarray) -> tuple:
    """The stencil of each point on one axis.

    Parameters
    ----------
    coords : ndarray (K,), increasing, K >= 2
    x : ndarray (n,), inside [coords[0], coords[-1]]

    Returns
    -------
    (first, weights): first line of each point's stencil, (n,) int, and the Lagrange weights
    of lines first .. first + p - 1, (n, p), p = min(STENCIL, K)
    """
    K = len(coords)
    p = min(STENCIL, K)
    cell = np.clip(np.searchsorted(coords, x, side="left") - 1, 0, K - 2)
    first = np.clip(cell - (p // 2 - 1), 0, K - p)
    nodes = coords[first[:, None] + np.arange(p)]  # (n, p)
    weights = np.ones((len(x), p))
    for i in range(p):
        for k in range(p):
            if k != i:
                weights[:, i] *= (x - nodes[:, k]) / (nodes[:, i] - nodes[:, k])
    return first, weights


def interpolate(grid: list, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values at ``x`` of the tensor-product local cubic interpolant.

    Parameters
    ----------
    grid : list of d increasing ndarrays (n_k,), each with n_k >= 2
    values : ndarray (n_1, ..., n_d, m)
    x : ndarray (n, d), inside the grid

    Returns
    -------
    ndarray (n, m) float64
    """
    stencils = [axis_stencil(c, x[:, k]) for k, c in enumerate(grid)]
    out = np.zeros((len(x), values.shape[-1]))
    # A fixed order of the 4^d terms: the same sum wherever the block was cut.
    for offsets in itertools.product(*(range(w.shape[1]) for _, w in stencils)):
        index = tuple(first + o for (first, _), o in zip(stencils, offsets))
        weight = stencils[0][1][:, offsets[0]].copy()
        for (_, w), o in zip(stencils[1:], offsets[1:]):
            weight *= w[:, o]
        out += weight[:, None] * values[index]
    return out

"""Jacobians of the residual rows with respect to each expert's own parameters.

Every residual row depends on one point only (a PDE residual, a boundary value, an interface
difference at one point; the other side's values are constants). So the experts are
evaluated on *per-point copies* (:func:`~ddpinn.training.lsq.per_point_copy`): expert e's
parameters repeated once per point, each copy evaluating one point, as one batched network of
E * N experts through the same derivative engine (Taylor mode by default). One backward pass
of the sum of a set of rows that touch every point at most once (a *colour*) then yields, in
the gradient of copy (e, n), the Jacobian row of the row at point n: the Jacobian of all
experts takes as many backward passes as a point has rows (e.g. q residual equations, m
boundary outputs, the interface conditions' widths), not one per row.

Measured on poisson2d (4 experts, width 20, depth 3, 716 rows each): a loop of one backward
pass per row took 7.9 ms a row (5.6 s), a vmapped batch of backward passes
(``is_grads_batched``, autograd engine only: the Taylor engine's custom functions have no
batching rule) 14 ms a row; per-point copies need 4 passes (see BENCHMARKS.md).
"""
from __future__ import annotations

import numpy as np
import torch


def colours(points: torch.Tensor) -> torch.Tensor:
    """Occurrence index of each row's point among the rows of its expert: (E, M) long.

    Rows of one colour touch every point of an expert at most once; rows without a point
    (-1: identically zero) get -1."""
    p = points.cpu().numpy()
    out = np.full_like(p, -1)
    for e in range(len(p)):
        idx = np.flatnonzero(p[e] >= 0)
        order = idx[np.argsort(p[e][idx], kind="stable")]
        sp = p[e][order]
        if not len(sp):
            continue
        start = np.r_[0, np.flatnonzero(sp[1:] != sp[:-1]) + 1]
        run = np.repeat(start, np.diff(np.r_[start, len(sp)]))
        out[e, order] = np.arange(len(sp)) - run
    return torch.as_tensor(out)


def jacobian(r: torch.Tensor, points: torch.Tensor, leaves: list, n_points: int) -> torch.Tensor:
    """Jacobian of every expert's rows with respect to its own parameters.

    Parameters
    ----------
    r : Tensor (E, M), residual rows computed on per-point copies
    points : Tensor (E, M) long, the point of each row
    leaves : list of Tensor (E * N, ...), the copies' parameters (their order is the
        parameter order of the result's last axis)
    n_points : int, N

    Returns
    -------
    Tensor (E, M, P), P the parameters of one expert (the shared unknowns last).
    """
    E, M = r.shape
    col = colours(points).to(r.device)
    J = None
    n_col = int(col.max()) + 1 if col.numel() else 0
    for c in range(n_col):
        mask = col == c
        grads = torch.autograd.grad((r * mask).sum(), leaves, retain_graph=c + 1 < n_col,
                                    allow_unused=True)
        G = torch.cat([torch.zeros_like(x).reshape(E, n_points, -1) if g is None
                       else g.reshape(E, n_points, -1) for g, x in zip(grads, leaves)], -1)
        if J is None:
            J = G.new_zeros(E, M, G.shape[-1])
        e, m = mask.nonzero(as_tuple=True)
        J[e, m] = G[e, points[e, m]]
    if J is None:
        J = r.new_zeros(E, M, sum(x[0].numel() for x in leaves))
    return J

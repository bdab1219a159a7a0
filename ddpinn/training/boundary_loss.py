"""Boundary conditions as linear operators on the experts' outputs and their derivatives.

Used where a batch carries :class:`~ddpinn.training.points_shape.BoundaryRows` (domains
with a shape or ``[[boundary]]`` tables): entry k of expert e asks

    sum_j A[e, k, :, j] u_j + b[e, k] (grad u . direction[e, k]) = target[e, k]

at row ``rows[e, k]`` of the batch, which covers Dirichlet, Neumann, Robin, outflow and
initial-rate conditions (:mod:`ddpinn.boundary`).
"""
from __future__ import annotations

import torch

from ddpinn.boundary.conditions import operator_value


def output_gradients(fields, n_out: int) -> torch.Tensor:
    """First derivatives of every output: (E, N, m, d)."""
    return torch.stack([fields.grad(k) for k in range(n_out)], dim=2)


def boundary_values(bc, u: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """The operator's value at every entry, (E, K, m).

    Parameters
    ----------
    bc : BoundaryRows
    u : Tensor (E, N, m), the outputs at every row
    grad : Tensor (E, N, m, d) or None when no entry has a derivative term
    """
    m = u.shape[-1]
    u_b = torch.gather(u, 1, bc.rows[..., None].expand(-1, -1, m))  # (E, K, m)
    g_b = None
    if bc.needs_gradient:
        d = grad.shape[-1]
        g_b = torch.gather(grad, 1, bc.rows[..., None, None].expand(-1, -1, m, d))
    return operator_value(bc.A, bc.b, bc.direction, u_b, g_b)


def boundary_residual(bc, u, grad) -> torch.Tensor:
    """Unweighted misfit of every entry, (E, K, m)."""
    return boundary_values(bc, u, grad) - bc.target

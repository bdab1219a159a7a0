"""A PDE system that ddpinn does not ship, written as a plugin: a steady 2D
reaction-diffusion pair on the unit square.

    -Laplace(u) + k u v              = f_u      ("diffusion_u", residual of size ~ 2 pi^2)
    -eps Laplace(v) + v - u^2        = f_v      ("reaction_v", residual of size ~ 1)

with the manufactured solution u = sin(pi x) sin(pi y), v = y exp(x), and the source terms
f_u, f_v that follow. The two equations differ in scale by about 20, so the case file weighs
them separately (``loss.residual = {diffusion_u = ..., reaction_v = ...}``).

Errors are measured against ``reaction_diffusion_reference.csv`` beside this file: scattered
points with the exact values, written by ``make_reaction_diffusion_reference.py``.

Run from the project's root (the module is imported as ``examples.reaction_diffusion``):

    python examples/make_reaction_diffusion_reference.py
    PYTHONPATH=. mpiexec -n 2 ddpinn run examples/reaction_diffusion.toml
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ddpinn.pdes import PDE

HERE = Path(__file__).resolve().parent


def exact_values(x: torch.Tensor) -> torch.Tensor:
    """(u, v) of the manufactured solution; x: (..., 2) -> (..., 2). Also used by the
    script that writes the reference file."""
    X, Y = x[..., 0], x[..., 1]
    u = torch.sin(math.pi * X) * torch.sin(math.pi * Y)
    v = Y * torch.exp(X)
    return torch.stack([u, v], dim=-1)


class ReactionDiffusion(PDE):
    """Steady reaction-diffusion pair (u, v) on [0, 1]^2 with Dirichlet data from the
    manufactured solution."""

    outputs = ("u", "v")
    equations = ("diffusion_u", "reaction_v")
    space_dims = (2,)
    defaults = {"k": 1.0, "eps": 0.1}
    domain = ([0.0, 0.0], [1.0, 1.0], None)
    # An absolute path: the reference travels with the plugin, not in the data directory.
    reference = str(HERE / "reaction_diffusion_reference.csv")

    def residual(self, f, p):
        k, eps = p["k"], p["eps"]
        x = f.x                                   # (E, N, 2): the points, for source terms
        exact = exact_values(x)                   # (E, N, 2), the manufactured solution
        u_e, v_e = exact[..., 0], exact[..., 1]   # (E, N)
        f_u = 2 * math.pi ** 2 * u_e + k * u_e * v_e
        f_v = -eps * v_e + v_e - u_e ** 2         # Laplace(y e^x) = y e^x
        u, v = f.value("u"), f.value(1)           # outputs by name or by index
        r_u = -f.laplacian("u") + k * u * v - f_u
        r_v = -eps * f.laplacian("v") + v - u ** 2 - f_v
        return torch.stack([r_u, r_v], dim=-1)    # (E, N, 2), in the order of `equations`

    def exact(self, x, p):
        # Boundary data (boundary_data's default) and the zero-residual test use it; the
        # run's errors come from the reference file.
        return exact_values(x)

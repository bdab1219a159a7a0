"""Poisson and Helmholtz equations with manufactured solutions in 1 to 3 dimensions.

Exact solution ``u = prod_i sin(k pi x_i)`` on the unit box; the source term follows.
"""
from __future__ import annotations

import math

import torch

from ddpinn.pdes.base import PDE, register_pde


def sine_product(x: torch.Tensor, k: float) -> torch.Tensor:
    """prod_i sin(k pi x_i); x: (..., d) -> (..., 1)."""
    return torch.prod(torch.sin(k * math.pi * x), dim=-1, keepdim=True)


@register_pde("poisson")
class Poisson(PDE):
    """-Laplace(u) = f with f = d (k pi)^2 prod sin(k pi x_i)."""

    defaults = {"k": 2.0}
    domain = ([0.0, 0.0], [1.0, 1.0], None)

    def residual(self, f, p):
        k, d = p["k"], self.space_dim
        source = d * (k * math.pi) ** 2 * sine_product(f.x, k)[..., 0]
        return (-f.laplacian(0) - source)[..., None]

    def exact(self, x, p):
        return sine_product(x, p["k"])


@register_pde("helmholtz")
class Helmholtz(PDE):
    """Laplace(u) + kappa^2 u = f with f = (kappa^2 - d (k pi)^2) prod sin(k pi x_i)."""

    defaults = {"k": 1.0, "kappa": 1.0}
    domain = ([0.0, 0.0], [1.0, 1.0], None)

    def residual(self, f, p):
        k, kappa, d = p["k"], p["kappa"], self.space_dim
        u = f.value(0)
        source = (kappa ** 2 - d * (k * math.pi) ** 2) * sine_product(f.x, k)[..., 0]
        return (f.laplacian(0) + kappa ** 2 * u - source)[..., None]

    def exact(self, x, p):
        return sine_product(x, p["k"])

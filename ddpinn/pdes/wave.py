"""The wave equation u_tt = c^2 Laplace(u), second order in time.

The last axis of x is time: x = (x, [y,] t). Besides u at t = t0 it needs the initial rate
u_t(t0) (a ``kind = "initial_rate"`` boundary condition on the tag "initial").
"""
from __future__ import annotations

import math

import torch

from ddpinn.pdes.base import PDE, register_pde
from ddpinn.pdes.elliptic import sine_product


@register_pde("wave")
class Wave(PDE):
    """u_tt = c^2 Laplace(u) on [0, 1]^d x [0, 1], d = 1 or 2.

    Exact solution: u = prod sin(pi x_i) (cos(w t) + sin(w t) / w), w = sqrt(d) c pi, zero on
    the space faces, with u(0) = prod sin(pi x_i) and u_t(0) = prod sin(pi x_i).
    """

    time_dependent = True
    space_dims = (1, 2)
    defaults = {"c": 1.0}
    domain = ([0.0], [1.0], [0.0, 1.0])

    def residual(self, f, p):
        space = [a for a in f.axes if a != "t"]
        return (f.d2(0, "t", "t") - p["c"] ** 2 * f.laplacian(0, space))[..., None]

    def exact(self, x, p):
        w = math.sqrt(self.space_dim) * p["c"] * math.pi
        t = x[..., -1:]
        return sine_product(x[..., :-1], 1.0) * (torch.cos(w * t) + torch.sin(w * t) / w)

    def flux(self, f, p):
        """grad u in space and u_t along t: (E, N, 1, d)."""
        space = [f.d(0, a) for a in f.axes if a != "t"]
        return torch.stack(space + [f.d(0, "t")], dim=-1)[..., None, :]

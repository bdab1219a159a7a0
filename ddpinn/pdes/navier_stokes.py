"""Incompressible Navier-Stokes: steady 2D (Kovasznay flow) and unsteady 3D (Beltrami flow).

Outputs are the velocity components and the pressure; residuals are the momentum equations
followed by continuity.
"""
from __future__ import annotations

import math

import torch

from ddpinn.pdes.base import PDE, register_pde


class IncompressibleNS(PDE):
    """Residuals of u_t + (u . grad) u + grad p - nu Laplace(u) = 0, div u = 0."""

    def residual(self, f, p):
        d = self.space_dim
        space = list(range(d))
        vel = [f.value(i) for i in range(d)]
        eqs = []
        for i in range(d):
            r = sum(vel[j] * f.d(i, j) for j in space) + f.d(d, i) - p["nu"] * f.laplacian(i, space)
            if self.time_dependent:
                r = r + f.d(i, "t")
            eqs.append(r)
        eqs.append(sum(f.d(i, i) for i in space))
        return torch.stack(eqs, dim=-1)


@register_pde("kovasznay")
class Kovasznay(IncompressibleNS):
    """Steady 2D Kovasznay flow (Re = 1/nu, default 40) on [-0.5, 1] x [-0.5, 1.5].

    Velocity is imposed on every face and pressure on the outflow face x = x_max.
    """

    outputs = ("u", "v", "p")
    space_dims = (2,)
    defaults = {"nu": 1.0 / 40.0}
    error_groups = {"velocity": ("u", "v")}
    domain = ([-0.5, -0.5], [1.0, 1.5], None)

    def exact(self, x, p):
        re = 1.0 / p["nu"]
        lam = re / 2 - math.sqrt(re ** 2 / 4 + 4 * math.pi ** 2)
        ex = torch.exp(lam * x[..., 0])
        cy, sy = torch.cos(2 * math.pi * x[..., 1]), torch.sin(2 * math.pi * x[..., 1])
        u = 1 - ex * cy
        v = lam / (2 * math.pi) * ex * sy
        pr = 0.5 * (1 - ex ** 2)
        return torch.stack([u, v, pr], dim=-1)

    def boundary_data(self, x, axis, side, p):
        return self.exact(x, p), [True, True, axis == 0 and side > 0]


@register_pde("beltrami")
class Beltrami(IncompressibleNS):
    """Unsteady 3D Beltrami (Ethier-Steinman) flow with a = d = 1 on [-1, 1]^3 x [0, 1].

    Velocity is imposed on the boundary and at t = 0; pressure is free up to a constant.
    """

    outputs = ("u", "v", "w", "p")
    space_dims = (3,)
    time_dependent = True
    defaults = {"nu": 1.0, "a": 1.0, "d": 1.0}
    gauge_outputs = ("p",)
    error_groups = {"velocity": ("u", "v", "w")}
    domain = ([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 1.0])

    def exact(self, x, p):
        a, d, nu = p["a"], p["d"], p["nu"]
        X, Y, Z, t = (x[..., i] for i in range(4))
        decay = torch.exp(-nu * d ** 2 * t)
        u = -a * (torch.exp(a * X) * torch.sin(a * Y + d * Z)
                  + torch.exp(a * Z) * torch.cos(a * X + d * Y)) * decay
        v = -a * (torch.exp(a * Y) * torch.sin(a * Z + d * X)
                  + torch.exp(a * X) * torch.cos(a * Y + d * Z)) * decay
        w = -a * (torch.exp(a * Z) * torch.sin(a * X + d * Y)
                  + torch.exp(a * Y) * torch.cos(a * Z + d * X)) * decay
        pr = -0.5 * a ** 2 * (
            torch.exp(2 * a * X) + torch.exp(2 * a * Y) + torch.exp(2 * a * Z)
            + 2 * torch.sin(a * X + d * Y) * torch.cos(a * Z + d * X) * torch.exp(a * (Y + Z))
            + 2 * torch.sin(a * Y + d * Z) * torch.cos(a * X + d * Y) * torch.exp(a * (Z + X))
            + 2 * torch.sin(a * Z + d * X) * torch.cos(a * Y + d * Z) * torch.exp(a * (X + Y))
        ) * decay ** 2
        return torch.stack([u, v, w, pr], dim=-1)

    def boundary_data(self, x, axis, side, p):
        return self.exact(x, p), [True, True, True, False]

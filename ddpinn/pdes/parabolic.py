"""Time-dependent scalar families: heat, linear advection, viscous Burgers, Allen-Cahn.

The last axis of x is time throughout: x = (x, [y, [z,]] t).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ddpinn.pdes.base import PDE, register_pde
from ddpinn.pdes.elliptic import sine_product


@register_pde("heat")
class Heat(PDE):
    """u_t = kappa Laplace(u), u = exp(-kappa d (k pi)^2 t) prod sin(k pi x_i).

    ``kappa`` may be an inverse unknown (``[pde.inverse] kappa = guess``).
    """

    time_dependent = True
    defaults = {"kappa": 0.1, "k": 1.0}
    domain = ([0.0], [1.0], [0.0, 1.0])

    def residual(self, f, p):
        space = [a for a in f.axes if a != "t"]
        return (f.d(0, "t") - p["kappa"] * f.laplacian(0, space))[..., None]

    def exact(self, x, p):
        d, k = self.space_dim, p["k"]
        decay = torch.exp(-p["kappa"] * d * (k * math.pi) ** 2 * x[..., -1:])
        return decay * sine_product(x[..., :-1], k)


@register_pde("advection")
class Advection(PDE):
    """u_t + beta sum_i u_{x_i} = 0, u = sin(sum_i (x_i - beta t)); periodic on [0, 2 pi]."""

    time_dependent = True
    defaults = {"beta": 1.0}
    domain = ([0.0], [2 * math.pi], [0.0, 1.0])

    def residual(self, f, p):
        space = [a for a in f.axes if a != "t"]
        return (f.d(0, "t") + p["beta"] * sum(f.d(0, a) for a in space))[..., None]

    def exact(self, x, p):
        return torch.sin(torch.sum(x[..., :-1] - p["beta"] * x[..., -1:], dim=-1, keepdim=True))

    def flux(self, f, p):
        # Conservative flux (beta u, ..., u): u_t + div(beta u) = 0.
        u = f.value(0)[..., None]
        return torch.stack([p["beta"] * u] * self.space_dim + [u], dim=-1)


@register_pde("burgers")
class Burgers(PDE):
    """u_t + u u_x = nu u_xx on [-1, 1] x [0, 1], u0 = -sin(pi x), u(+-1) = 0.

    The PINNacle setting (nu = 0.01 / pi). Compared with the exact solution by the Cole-Hopf
    transform (:mod:`ddpinn.references.burgers`), computed on the test grid at the case's nu;
    the PINNacle data file differs from it by about 1 %.
    """

    time_dependent = True
    space_dims = (1,)
    defaults = {"nu": 0.01 / math.pi}
    domain = ([-1.0], [1.0], [0.0, 1.0])

    def computed_reference(self, axes, p, cache=None, resolution=0):
        """u by Cole-Hopf on the tensor grid ``axes`` (x, t): values (len(x), len(t), 1).

        The transform solves the problem on the whole line with u0 = -sin(pi x), whose
        solution vanishes at x = +-1: the domain in x must be [-1, 1] (any end time)."""
        from ddpinn.references.burgers import burgers_cole_hopf

        x, t = (np.asarray(a, float) for a in axes)
        if abs(x.min() + 1.0) > 1e-9 or abs(x.max() - 1.0) > 1e-9:
            raise ValueError(f"the Cole-Hopf reference of PDE 'burgers' is for x in [-1, 1], "
                             f"but the domain is [{x.min():g}, {x.max():g}]: set "
                             f"'domain.lower' = [-1.0] and 'domain.upper' = [1.0]")
        xs, ts = np.meshgrid(x, t, indexing="ij")
        u = burgers_cole_hopf(xs, ts, float(p["nu"]))
        return u[..., None], f"Cole-Hopf, nu = {float(p['nu']):.6g}"

    def residual(self, f, p):
        u = f.value(0)
        return (f.d(0, "t") + u * f.d(0, "x") - p["nu"] * f.d2(0, "x", "x"))[..., None]

    def boundary_data(self, x, axis, side, p):
        if axis == 1:  # initial face
            return -torch.sin(math.pi * x[..., :1]), [True]
        return torch.zeros_like(x[..., :1]), [True]

    def flux(self, f, p):
        u = f.value(0)
        fx = 0.5 * u ** 2 - p["nu"] * f.d(0, "x")
        return torch.stack([fx, u], dim=-1)[..., None, :]


@register_pde("allen_cahn")
class AllenCahn(PDE):
    """u_t = d u_xx + r (u - u^3) in 1D.

    Exact solution: the stationary kink u = tanh(x sqrt(r / (2 d))), also the initial data.
    """

    time_dependent = True
    space_dims = (1,)
    defaults = {"d": 0.01, "r": 1.0}
    domain = ([-1.0], [1.0], [0.0, 1.0])

    def residual(self, f, p):
        u = f.value(0)
        return (f.d(0, "t") - p["d"] * f.d2(0, "x", "x") - p["r"] * (u - u ** 3))[..., None]

    def exact(self, x, p):
        c = (p["r"] / (2 * p["d"])) ** 0.5
        return torch.tanh(c * x[..., :1]) + 0 * x[..., -1:]

"""Incompressible Navier-Stokes: steady flow in 2D and 3D (boundary data from the case), steady
2D Kovasznay flow, unsteady 3D Beltrami flow and the 3D Taylor-Green vortex.

Outputs are the velocity components and the pressure; residuals are the momentum equations
followed by continuity.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ddpinn.pdes.base import PDE, register_pde


class IncompressibleNS(PDE):
    """Residuals of u_t + (u . grad) u + grad p - nu Laplace(u) = 0, div u = 0.

    With parameter ``ppe`` > 0 a last residual ``ppe * (Laplace(p) + d_i u_j d_j u_i)`` is
    added: the pressure Poisson equation, the divergence of the momentum equations on a
    divergence-free field. Exact solutions satisfy it, so it changes no solution; it ties the
    pressure to the velocity at every time, where momentum and continuity alone reach it only
    through d/dt div u = 0 (a weak signal for a network started from w = 0 in the
    Taylor-Green vortex).

    Equations (``loss.residual = {momentum_x = 1, continuity = 10}``): ``momentum_x``,
    ``momentum_y`` [, ``momentum_z``], ``continuity`` [, ``ppe``].
    """

    @property
    def equations(self) -> tuple:
        names = [f"momentum_{a}" for a in "xyz"[:self.space_dim]] + ["continuity"]
        return tuple(names + (["ppe"] if self.params.get("ppe", 0.0) else []))

    def residual(self, f, p):
        return ns_residual(f, p, self.space_dim, self.time_dependent)


def ns_residual(f, p: dict, space_dim: int, time_dependent: bool) -> torch.Tensor:
    """Incompressible Navier-Stokes residual of the fields ``f``: (E, N, n_equations).

    Outputs of ``f``: velocity components 0..space_dim-1, then the pressure. Columns:
    momentum along each space axis ((u . grad) u + grad p - nu Laplace(u) [+ u_t]), then
    continuity (div u), then ``ppe * (Laplace(p) + d_i u_j d_j u_i)`` when ``p["ppe"]`` is
    set and non-zero.
    """
    d = space_dim
    space = list(range(d))
    vel = [f.value(i) for i in range(d)]
    eqs = []
    for i in range(d):
        r = sum(vel[j] * f.d(i, j) for j in space) + f.d(d, i) - p["nu"] * f.laplacian(i, space)
        if time_dependent:
            r = r + f.d(i, "t")
        eqs.append(r)
    eqs.append(sum(f.d(i, i) for i in space))
    ppe = p.get("ppe", 0.0)
    if ppe:
        quad = sum(f.d(i, j) * f.d(j, i) for i in space for j in space)
        eqs.append(ppe * (f.laplacian(d, space) + quad))
    return torch.stack(eqs, dim=-1)


@register_pde("kovasznay")
class Kovasznay(IncompressibleNS):
    """Steady 2D Kovasznay flow (Re = 1/nu, default 40) on [-0.5, 1] x [-0.5, 1.5].

    Velocity is imposed on every face and pressure on the outflow face x = x_max.
    """

    outputs = ("u", "v", "p")
    space_dims = (2,)
    defaults = {"nu": 1.0 / 40.0, "ppe": 0.0}
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


@register_pde("navier_stokes")
class NavierStokes(IncompressibleNS):
    """Steady incompressible Navier-Stokes in 2D or 3D, outputs (u, v, p) or (u, v, w, p).

    (u . grad) u + grad p - nu Laplace(u) = 0, div u = 0 (default nu = 1e-3: the channel
    flow around a cylinder of the DFG benchmark 2D-1 on [0, 2.2] x [0, 0.41]). No closed
    form and no default data: the boundary conditions come from the case's ``[[boundary]]``
    tables (inflow profile, no-slip walls, an outflow condition that also fixes the
    pressure).
    """

    outputs = ("u", "v", "p")  # 2D; an instance in 3D has (u, v, w, p)
    space_dims = (2, 3)
    defaults = {"nu": 1e-3, "ppe": 0.0}
    gauge_outputs = ()
    error_groups = {"velocity": ("u", "v")}
    domain = ([0.0, 0.0], [2.2, 0.41], None)

    def __init__(self, space_dim: int, params: dict | None = None):
        super().__init__(space_dim, params)
        velocity = ("u", "v", "w")[:space_dim]
        self.outputs = velocity + ("p",)
        self.error_groups = {"velocity": velocity}

    # A case must give its conditions as [[boundary]] tables (checked by build_problem).
    needs_boundary_tables = True

    def boundary_data(self, x, axis, side, p):
        """No default data: zeros with every output unconstrained (the case's
        ``[[boundary]]`` tables say what holds where)."""
        return torch.zeros(x.shape[0], self.n_out, dtype=x.dtype), [False] * self.n_out


@register_pde("unsteady_navier_stokes")
class UnsteadyNavierStokes(NavierStokes):
    """Time-dependent incompressible Navier-Stokes in 2D or 3D, outputs (u, v[, w], p).

    u_t + (u . grad) u + grad p - nu Laplace(u) = 0, div u = 0. No closed form: the
    boundary and initial conditions come from ``[[boundary]]`` tables, typically from data
    (``values = { data = "name" }``), as in a subvolume of a turbulent flow. The pressure is
    defined up to a function of time: errors remove its mean at every time.
    """

    time_dependent = True
    defaults = {"nu": 1.0 / 1600.0, "ppe": 0.0}
    gauge_outputs = ("p",)
    domain = ([0.0, 0.0], [1.0, 1.0], (0.0, 1.0))


@register_pde("beltrami")
class Beltrami(IncompressibleNS):
    """Unsteady 3D Beltrami (Ethier-Steinman) flow with a = d = 1 on [-1, 1]^3 x [0, 1].

    Velocity is imposed on the boundary and at t = 0; pressure is free up to a constant.
    """

    outputs = ("u", "v", "w", "p")
    space_dims = (3,)
    time_dependent = True
    defaults = {"nu": 1.0, "a": 1.0, "d": 1.0, "ppe": 0.0}
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


@register_pde("taylor_green")
class TaylorGreen(IncompressibleNS):
    """3D Taylor-Green vortex in the periodic box [-pi, pi]^3, Re = 1 / nu (default 100).

    Initial velocity u = sin x cos y cos z, v = -cos x sin y cos z, w = 0 (E = 1/8); periodic
    in x, y, z, so the initial face is the only one with data. No closed form: the reference
    is the project's pseudo-spectral solution (:mod:`ddpinn.references.spectral`), and runs
    also report E(t), -dE/dt and 2 nu enstrophy of the trained networks.
    """

    outputs = ("u", "v", "w", "p")
    space_dims = (3,)
    time_dependent = True
    defaults = {"nu": 1.0 / 100.0, "ppe": 0.0}
    gauge_outputs = ("p",)
    error_groups = {"velocity": ("u", "v", "w")}
    domain = ([-math.pi] * 3, [math.pi] * 3, [0.0, 2.0])
    energy_diagnostics = True
    periodic_space = True

    def boundary_data(self, x, axis, side, p):
        if axis != 3:
            raise ValueError(f"PDE 'taylor_green' has no data on the space faces: set "
                             f"field 'domain.periodic' = [\"x\", \"y\", \"z\"] (got a "
                             f"boundary face along {'xyz'[axis]!r})")
        X, Y, Z = x[..., 0], x[..., 1], x[..., 2]
        u = torch.sin(X) * torch.cos(Y) * torch.cos(Z)
        v = -torch.cos(X) * torch.sin(Y) * torch.cos(Z)
        return torch.stack([u, v, torch.zeros_like(u), torch.zeros_like(u)], dim=-1), \
            [True, True, True, False]

    def reference_resolution(self, p) -> int:
        """Spectral grid points per axis by Reynolds number (resolves t <= 10 at Re 1600
        only roughly; set output.reference_n for more)."""
        return 64 if 1.0 / p["nu"] <= 200 else 128

    def computed_reference(self, axes, p, cache=None, resolution=0):
        """Spectral reference on the tensor grid ``axes`` (x, y, z, t 1D arrays).

        Returns
        -------
        values : ndarray (len(x), len(y), len(z), len(t), 4), pressure with zero mean
        source : str
        """
        from ddpinn.references.spectral import cached_taylor_green, interpolate

        lower = [float(a.min()) for a in axes[:3]]
        upper = [float(a.max()) for a in axes[:3]]
        if max(abs(v + math.pi) for v in lower) > 1e-9 or \
                max(abs(v - math.pi) for v in upper) > 1e-9:
            raise ValueError(f"the Taylor-Green reference is computed on [-pi, pi]^3, but the "
                             f"domain is {lower} to {upper}: set 'domain.lower' = [-pi]*3 "
                             f"and 'domain.upper' = [pi]*3")
        if resolution and (resolution < 4 or resolution % 2):
            raise ValueError(f"field 'output.reference_n' = {resolution!r}: the spectral "
                             f"solver needs an even number of grid points >= 4 (or 0: auto)")
        n = int(resolution) or self.reference_resolution(p)
        ref = cached_taylor_green(n, float(p["nu"]), np.asarray(axes[3], float), cache)
        # One time at a time: the spectra of all times at once would not fit at n = 128.
        values = np.stack([interpolate(np.concatenate([u, q[None]]), axes[:3])
                           for u, q in zip(ref.velocity, ref.pressure)])  # (nt, 4, mx, my, mz)
        return np.moveaxis(values, (0, 1), (3, 4)), f"spectral {n}^3, nu = {p['nu']:.6g}"

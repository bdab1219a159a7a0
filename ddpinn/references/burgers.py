"""The viscous Burgers equation solved exactly (Cole-Hopf), at any viscosity: the reference
of METALIC campaigns whose rewards need one at every PDE parameter.

``burgers_cole_hopf``: the viscous Burgers equation u_t + u u_x = nu u_xx on [-1, 1] x [0, 1]
with u0 = -sin(pi x) and u(+-1, t) = 0 (the ``burgers`` family of :mod:`ddpinn.pdes`). The
reference data file of the ``burgers`` case holds one viscosity only (0.01/pi); a campaign over
nu needs the solution at every nu, which the Cole-Hopf transform gives exactly::

    u(x, t) = int u0(y) exp(psi(y) / nu) dy / int exp(psi(y) / nu) dy,
    psi(y)  = -cos(pi y) / (2 pi) - (x - y)^2 / (4 t)

(u0 is odd about x = 0 and x = +-1, so the whole-line solution has u(+-1, t) = 0.) Both
integrals are evaluated on a uniform y-grid around x, wide enough that the weights left out are
below exp(-40) of the largest, with the largest exponent subtracted (no overflow for small nu).
"""
from __future__ import annotations

import math

import numpy as np


def burgers_cole_hopf(x, t, nu: float, n_quad: int = 4001, chunk: int = 256) -> np.ndarray:
    """u(x, t) of the Burgers problem above at points ``x``, ``t`` (same shape).

    Parameters
    ----------
    x, t : array-like, same shape; t >= 0
    nu : float > 0, viscosity
    n_quad : int, quadrature points per evaluation point
    """
    x = np.asarray(x, dtype=float)
    t = np.broadcast_to(np.asarray(t, dtype=float), x.shape)
    if not nu > 0:
        raise ValueError(f"viscosity nu = {nu!r} must be > 0")
    xf, tf = x.ravel(), t.ravel()
    out = -np.sin(math.pi * xf)  # t = 0
    pos = np.flatnonzero(tf > 0)
    s = np.linspace(-1.0, 1.0, n_quad)
    for i in range(0, len(pos), chunk):
        idx = pos[i:i + chunk]
        xi, ti = xf[idx, None], tf[idx, None]
        half = np.sqrt(4.0 * ti * (1.0 / math.pi + 40.0 * nu))  # (P, 1)
        y = xi + half * s  # (P, Q)
        psi = (-np.cos(math.pi * y) / (2 * math.pi) - (xi - y) ** 2 / (4.0 * ti)) / nu
        w = np.exp(psi - psi.max(axis=1, keepdims=True))
        out[idx] = (-np.sin(math.pi * y) * w).sum(1) / w.sum(1)
    return out.reshape(x.shape)


def _burgers_on_grid(axes: dict, params: dict) -> np.ndarray:
    xs, ts = np.meshgrid(axes["x"], axes["t"], indexing="ij")
    return burgers_cole_hopf(xs, ts, float(params["nu"]))


# name -> (PDE family it belongs to, fn(axes: dict name -> 1D array, params) -> u on the grid)
REFERENCES = {"burgers_cole_hopf": ("burgers", _burgers_on_grid)}

"""Kinds of boundary conditions: the registry :data:`BOUNDARY_KINDS`.

Every kind is linear in the m outputs u and in their derivative along a per-row direction:
on row r, output k,

    B(u)_k = sum_j A[r, k, j] u_j + b[r, k] * (grad u_k . dir[r]) = g[r, k].

A kind says which outputs it may constrain, checks what it needs of the PDE and the case,
and builds ``A (n, m, m)``, ``b (n, m)`` and ``dir (n, d)`` from the boundary points'
outward normals. Add a kind with :func:`register_kind`.
"""
from __future__ import annotations

import numpy as np

from ddpinn.boundary.values import float_params

# The tag of the initial face t = t0 of a time-dependent problem.
INITIAL_TAG = "initial"

BOUNDARY_KINDS = {}


def register_kind(name: str):
    """Class decorator: make a :class:`BoundaryKind` available as ``kind = name``."""
    def deco(cls):
        cls.name = name
        BOUNDARY_KINDS[name] = cls()
        return cls
    return deco


class BoundaryKind:
    """Base of a kind of boundary condition.

    Attributes
    ----------
    default_value : float or None
        Value of the kind's outputs that a case leaves out (None: ``values`` is required).
    extra : tuple of str
        Keys of the case's table only this kind accepts (robin: alpha, beta).
    """

    name = ""
    default_value = None
    extra: tuple = ()

    def outputs(self, pde) -> tuple:
        """Indices of the outputs this kind may constrain (default: all of them)."""
        return tuple(range(pde.n_out))

    def check(self, pde, axes: tuple, tags: tuple, field: str) -> None:
        """Raise ValueError naming ``field`` (``boundary[i]``) where the kind cannot apply."""

    def uses_gradient(self, cond) -> bool:
        """True when some b is non-zero: the rows need the outputs' gradients."""
        return True

    def operator(self, cond, normal: np.ndarray, pde, params: dict):
        """normal (n, d) -> A (n, m, m), b (n, m), direction (n, d), float64."""
        raise NotImplementedError


def _empty(normal, m):
    n = len(normal)
    return np.zeros((n, m, m)), np.zeros((n, m)), np.zeros_like(normal, dtype=np.float64)


@register_kind("dirichlet")
class Dirichlet(BoundaryKind):
    """u_k = g_k: A = I, b = 0."""

    def uses_gradient(self, cond):
        return False

    def operator(self, cond, normal, pde, params):
        A, b, direction = _empty(normal, pde.n_out)
        A[:] = np.eye(pde.n_out)
        return A, b, direction


@register_kind("neumann")
class Neumann(BoundaryKind):
    """du_k/dn = g_k: A = 0, b = 1, dir = outward normal."""

    def operator(self, cond, normal, pde, params):
        A, b, _ = _empty(normal, pde.n_out)
        b[:] = 1.0
        return A, b, np.array(normal, dtype=np.float64)


@register_kind("robin")
class Robin(BoundaryKind):
    """alpha u_k + beta du_k/dn = g_k: A = alpha I, b = beta, dir = outward normal."""

    extra = ("alpha", "beta")

    def uses_gradient(self, cond):
        return cond.beta != 0.0

    def operator(self, cond, normal, pde, params):
        A, b, _ = _empty(normal, pde.n_out)
        A[:] = cond.alpha * np.eye(pde.n_out)
        b[:] = cond.beta
        return A, b, np.array(normal, dtype=np.float64)


@register_kind("outflow")
class Outflow(BoundaryKind):
    """Do-nothing outflow of incompressible flow: nu du_i/dn - p n_i = g_i (default 0) for
    each velocity component i (outputs u, v[, w]), pressure output ``p``, parameter ``nu``.
    It fixes the pressure's constant where the velocity is not imposed."""

    default_value = 0.0

    def _velocity(self, pde):
        return ("u", "v", "w")[:pde.space_dim]

    def outputs(self, pde):
        return tuple(pde.outputs.index(n) for n in self._velocity(pde))

    def check(self, pde, axes, tags, field):
        need = self._velocity(pde) + ("p",)
        missing = [n for n in need if n not in pde.outputs]
        if missing or "nu" not in pde.params:
            raise ValueError(f"field '{field}.kind' = 'outflow' needs a flow PDE with outputs "
                             f"{', '.join(need)} and a parameter 'nu'; PDE {pde.name!r} has "
                             f"outputs {', '.join(pde.outputs)} and parameters "
                             f"{', '.join(pde.params) or '(none)'}")

    def operator(self, cond, normal, pde, params):
        A, b, _ = _empty(normal, pde.n_out)
        nu = float_params({"nu": params["nu"]})["nu"]
        p = pde.outputs.index("p")
        for axis, k in enumerate(self.outputs(pde)):
            A[:, k, p] = -normal[:, axis]
            b[:, k] = nu
        return A, b, np.array(normal, dtype=np.float64)


@register_kind("initial_rate")
class InitialRate(BoundaryKind):
    """u_t = g at t = t0 (problems second order in time): A = 0, b = 1, dir = +t; only on
    the tag "initial"."""

    def check(self, pde, axes, tags, field):
        if "t" not in axes:
            raise ValueError(f"field '{field}.kind' = 'initial_rate' needs a time-dependent "
                             f"problem; the axes are {', '.join(axes)}")
        if tuple(tags) != (INITIAL_TAG,):
            raise ValueError(f"field '{field}.tags' = {list(tags)!r}: kind 'initial_rate' "
                             f"applies to the tag 'initial' only")

    def operator(self, cond, normal, pde, params):
        A, b, direction = _empty(normal, pde.n_out)
        b[:] = 1.0
        direction[:, pde.axes.index("t")] = 1.0
        return A, b, direction

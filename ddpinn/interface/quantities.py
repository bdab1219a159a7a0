"""Interface quantities: the per-side values interface conditions compare, as a registry.

A quantity has a name, a width (values per interface point, a function of the PDE's outputs
``m``, its residual equations ``q`` and the dimension ``d``) and a function computing it
from the fields, shape (S, n, width) for S interface sides of n points. The exchange computes
and ships only the quantities the active conditions need; ``ddpinn info`` sizes the exchange
from the widths.

=======  ===========================================================  ==========
name     meaning                                                      shape
=======  ===========================================================  ==========
u        outputs                                                      (S, n, m)
res      PDE residual                                                 (S, n, q)
dn       derivative along the interface normal axis                   (S, n, m)
dnn      second derivative along the normal axis                      (S, n, m)
dtt      second derivatives along each tangential axis (normal: 0)    (S, n, m*d)
flux     the PDE's flux along the normal axis                         (S, n, m)
gres     gradient of the residual                                     (S, n, q*d)
=======  ===========================================================  ==========
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Quantity:
    """An interface quantity.

    ``width(m, q, d) -> int``: values per point for m outputs, q residual equations and
    dimension d. ``compute(sides) -> (S, n, width)`` from a :class:`Sides`.
    """

    name: str
    width: Callable
    compute: Callable
    doc: str


# name -> Quantity, in the fixed order in which quantities are computed and listed.
QUANTITIES: dict = {}


def quantity(name: str, width: Callable):
    """Register ``fn(sides) -> (S, n, c)`` as interface quantity ``name`` of ``width(m, q, d)``
    values per point."""
    def deco(fn):
        QUANTITIES[name] = Quantity(name, width, fn, (fn.__doc__ or "").strip())
        return fn
    return deco


def values_per_point(names, m: int, q: int, d: int) -> int:
    """Values per interface point of the named quantities, for m outputs, q residual
    equations and dimension d."""
    return sum(QUANTITIES[n].width(m, q, d) for n in names)


def gather_sides(plan, full: torch.Tensor) -> torch.Tensor:
    """Rows of the interface sides: full (E, N, ...) -> (S, n, ...)."""
    flat = full.reshape(-1, *full.shape[2:])
    return flat[plan.rows.reshape(-1)].reshape(plan.n_sides, plan.n_points, *full.shape[2:])


def select_axis(plan, t: torch.Tensor) -> torch.Tensor:
    """Pick each side's normal axis from the last dim: (S, n, c, d) -> (S, n, c)."""
    idx = plan.axis.view(-1, 1, 1, 1).expand(*t.shape[:-1], 1)
    return t.gather(-1, idx).squeeze(-1)


class Sides:
    """What a quantity is computed from: the plan's interface sides of one rank's fields.

    Attributes: ``plan``, ``fields`` (x (E, N, d), u (E, N, m)), ``residual`` (E, N, q),
    ``pde``, ``params``, ``m`` and ``d``. :meth:`shared` computes an intermediate once for
    all quantities of one call.
    """

    def __init__(self, plan, fields, residual, pde, params):
        self.plan, self.fields, self.residual = plan, fields, residual
        self.pde, self.params = pde, params
        self.m, self.d = pde.n_out, fields.x.shape[-1]
        self._shared = {}

    def shared(self, key: str, make: Callable):
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def gather(self, full: torch.Tensor) -> torch.Tensor:
        return gather_sides(self.plan, full)

    def normal(self, t: torch.Tensor) -> torch.Tensor:
        return select_axis(self.plan, t)


@quantity("u", width=lambda m, q, d: m)
def _u(s):
    """outputs"""
    return s.gather(s.fields.u)


@quantity("res", width=lambda m, q, d: q)
def _res(s):
    """PDE residual"""
    return s.gather(s.residual)


@quantity("dn", width=lambda m, q, d: m)
def _dn(s):
    """derivative along the interface normal axis"""
    grads = torch.stack([s.fields.grad(k) for k in range(s.m)], dim=-2)  # (E, N, m, d)
    return s.normal(s.gather(grads))


def _diag_sides(s):
    """Second derivatives d2u_k/dx_a2 on the sides: (S, n, m, d)."""
    def make():
        diag = torch.stack([torch.stack([s.fields.d2(k, a, a) for a in range(s.d)], dim=-1)
                            for k in range(s.m)], dim=-2)  # (E, N, m, d)
        return s.gather(diag)
    return s.shared("diag", make)


@quantity("dnn", width=lambda m, q, d: m)
def _dnn(s):
    """second derivative along the normal axis"""
    return s.normal(_diag_sides(s))


@quantity("dtt", width=lambda m, q, d: m * d)
def _dtt(s):
    """second derivatives along each tangential axis (normal: 0)"""
    sides = _diag_sides(s)
    normal = torch.nn.functional.one_hot(s.plan.axis, s.d).to(sides.dtype)
    return (sides * (1 - normal[:, None, None, :])).flatten(-2)


@quantity("flux", width=lambda m, q, d: m)
def _flux(s):
    """the PDE's flux along the normal axis"""
    return s.normal(s.gather(s.pde.flux(s.fields, s.params)))


@quantity("gres", width=lambda m, q, d: q * d)
def _gres(s):
    """gradient of the residual"""
    r = s.residual
    g = torch.stack([s.fields.grad_of(r[..., j]) for j in range(r.shape[-1])],
                    dim=-2)  # (E, N, q, d)
    return s.gather(g).flatten(-2)


def compute_quantities(plan, fields, residual, pde, params, names) -> dict:
    """The named quantities on this rank's interface sides, each (S, n, c), in registry
    order."""
    sides = Sides(plan, fields, residual, pde, params)
    return {q: QUANTITIES[q].compute(sides) for q in QUANTITIES if q in names}

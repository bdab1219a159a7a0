"""Outputs that meet boundary data exactly: u_k = g_k + phi_k N_k.

phi_k (>= 0, 0 exactly where output k is imposed) and g_k (the data, extended inside) are
weight-free functions of the points (:mod:`ddpinn.boundary.hard` builds them from the
case's hard Dirichlet conditions), so u_k meets the data whatever the weights (Lagaris et
al. 1998; Sukumar & Srivastava 2022). Outputs without hard data have phi = 1, g = 0 and are
the networks themselves.

:class:`DistanceConstraint` is applied by the batched network's forward (autograd engine,
evaluation, prediction and solution files see the constrained outputs);
:class:`DistanceFields` forms the derivatives of the product for the Taylor-mode engine
from the networks' ones, the product rule and autograd on phi and g alone:

    d_a u   = phi d_a N + d_a phi N + d_a g
    d_ab u  = phi d_ab N + d_a phi d_b N + d_b phi d_a N + d_ab phi N + d_ab g

As for the hard initial condition (:mod:`ddpinn.nn.constraints`), with ``constant_data``
phi, g and their derivatives are computed once per point set and kept as constants.
"""
from __future__ import annotations

import copy

import torch

from ddpinn.nn.constraints import cached_per_point_set
from ddpinn.nn.derivatives import _grad


class DistanceConstraint:
    """The map N -> g + phi N, the same for every expert (no per-expert state).

    Parameters
    ----------
    parts : callable, x (E, N, d) -> (phi (E, N, m), g (E, N, m)); phi = 1 and g = 0 on
        outputs without hard data
    outputs : list of bool, length m, which outputs are constrained
    """

    def __init__(self, parts, outputs):
        self.parts = parts
        self.outputs = [bool(v) for v in outputs]
        self._cache = {}  # point set -> _Derivatives (constants), see cached()

    def apply(self, x: torch.Tensor, net: torch.Tensor) -> torch.Tensor:
        """Constrained outputs (E, N, m) from the networks' outputs ``net`` (E, N, m)."""
        phi, g = self.parts(x)
        return g + phi * net

    def cached(self, x: torch.Tensor) -> "_Derivatives":
        """phi, g and their derivatives at ``x`` (E, N, d) as constants, once per point set
        (the few newest sets are kept)."""
        return cached_per_point_set(self._cache, x,
                                    lambda pts: _Derivatives(self, pts, live=False))

    def fields(self, inner, x: torch.Tensor, constant_data: bool = False):
        """The Fields of the constrained outputs from those of the networks (``inner``)."""
        return DistanceFields(inner, self, x, constant_data=constant_data)

    def repeat_experts(self, n: int) -> "DistanceConstraint":
        """The constraint of the experts repeated ``n`` times each: nothing is per expert,
        so a shallow copy with an empty cache."""
        out = copy.copy(self)
        out._cache = {}
        return out

    def to(self, device=None, dtype=None) -> "DistanceConstraint":
        """No tensors of its own: phi and g follow the points' dtype and device."""
        return self


class _Derivatives:
    """phi and g at one point set (columns 0..m-1: phi, m..2m-1: g) and their derivatives,
    by autograd on the weight-free functions.

    ``live``: with their graph to ``x`` (so ``grad_of`` sees them); else at a private leaf
    and returned detached (then ``x``, kept here, pins the point set's storage).
    """

    def __init__(self, constraint: DistanceConstraint, x: torch.Tensor, live: bool):
        self.x, self.live = x, live
        if live:
            self.leaf = x if x.requires_grad else x.detach().requires_grad_(True)
        else:
            self.leaf = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            phi, g = constraint.parts(self.leaf)
        self.m = phi.shape[-1]
        self.values = torch.cat([phi, g], dim=-1)  # (E, N, 2m)
        self._first = {}  # column -> (E, N, d), with graph
        self._second = {}  # (column, a) -> (E, N, d)

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.live else t.detach()

    def value(self, j: int) -> torch.Tensor:
        return self._out(self.values[..., j])

    def first(self, j: int) -> torch.Tensor:
        """Gradient (E, N, d) of column j."""
        if j not in self._first:
            with torch.enable_grad():
                self._first[j] = _grad(self.values[..., j], self.leaf)
        return self._out(self._first[j])

    def second(self, j: int, a: int, b: int) -> torch.Tensor:
        """d_ab of column j: (E, N)."""
        key = (j, min(a, b))
        if key not in self._second:
            self.first(j)
            with torch.enable_grad():
                self._second[key] = _grad(self._first[j][..., key[1]], self.leaf)
        return self._out(self._second[key][..., max(a, b)])


class DistanceFields:
    """Derivatives of g + phi N from those of the networks (the Fields interface).

    Parameters
    ----------
    inner : TaylorFields (or Fields) of the unconstrained networks at x
    constraint : DistanceConstraint
    x : Tensor (E, N, d), the points of ``inner``
    constant_data : bool, take phi, g and their derivatives as constants kept per point
        set; then ``grad_of`` misses their x-derivatives
    """

    def __init__(self, inner, constraint: DistanceConstraint, x: torch.Tensor,
                 constant_data: bool = False):
        self.inner, self.c, self.x = inner, constraint, x
        self.aux = constraint.cached(x) if constant_data else \
            _Derivatives(constraint, x, live=True)
        self.axes, self.outputs = inner.axes, inner.outputs
        self._k, self._a = inner._k, inner._a  # names or indices -> indices
        self._u = None

    def _g(self, k: int) -> int:
        return self.aux.m + k

    @property
    def u(self) -> torch.Tensor:
        """Constrained outputs (E, N, m)."""
        if self._u is None:
            vals = self.aux.values if self.aux.live else self.aux.values.detach()
            m = self.aux.m
            self._u = vals[..., m:] + vals[..., :m] * self.inner.u
        return self._u

    def value(self, comp) -> torch.Tensor:
        return self.u[..., self._k(comp)]

    def d(self, comp, axis) -> torch.Tensor:
        k, a = self._k(comp), self._a(axis)
        if not self.c.outputs[k]:
            return self.inner.d(k, a)
        aux = self.aux
        return (aux.value(k) * self.inner.d(k, a) + aux.first(k)[..., a] * self.inner.value(k)
                + aux.first(self._g(k))[..., a])

    def grad(self, comp) -> torch.Tensor:
        k = self._k(comp)
        if not self.c.outputs[k]:
            return self.inner.grad(k)
        return torch.stack([self.d(k, a) for a in range(len(self.axes))], dim=-1)

    def d2(self, comp, a1, a2) -> torch.Tensor:
        k, a, b = self._k(comp), self._a(a1), self._a(a2)
        if not self.c.outputs[k]:
            return self.inner.d2(k, a, b)
        aux, net = self.aux, self.inner
        dphi = aux.first(k)
        return (aux.value(k) * net.d2(k, a, b) + dphi[..., a] * net.d(k, b)
                + dphi[..., b] * net.d(k, a) + aux.second(k, a, b) * net.value(k)
                + aux.second(self._g(k), a, b))

    def hess_row(self, comp, axis) -> torch.Tensor:
        k, a = self._k(comp), self._a(axis)
        if not self.c.outputs[k]:
            return self.inner.hess_row(k, a)
        return torch.stack([self.d2(k, a, b) for b in range(len(self.axes))], dim=-1)

    def laplacian(self, comp, axes=None) -> torch.Tensor:
        axes = axes if axes is not None else [a for a in self.axes if a != "t"]
        k = self._k(comp)
        if not self.c.outputs[k]:
            return self.inner.laplacian(k, axes)
        aux, net = self.aux, self.inner
        idx = [self._a(a) for a in axes]
        dphi = aux.first(k)
        out = aux.value(k) * net.laplacian(k, axes)
        for a in idx:
            out = out + 2.0 * dphi[..., a] * net.d(k, a) \
                + aux.second(k, a, a) * net.value(k) + aux.second(self._g(k), a, a)
        return out

    def grad_of(self, y: torch.Tensor) -> torch.Tensor:
        """Gradient of a per-point quantity y (E, N) -> (E, N, d), by autograd."""
        if not self.x.requires_grad:
            raise RuntimeError("DistanceFields.grad_of needs x.requires_grad (it uses "
                               "autograd)")
        return _grad(y, self.x)

"""Hard initial conditions: experts on the first time slab meet the initial data exactly.

For an expert whose box starts at the initial time t0, every output k with initial data g_k is

    u_k(x, t) = g_k(x) + s(t) N_k(x, t),    s(t) = (t - t0) / tau

with N the network and tau the slab's length in time, so u_k(x, t0) = g_k(x) whatever the
weights (Lagaris et al. 1998; Lu et al., "Physics-informed neural networks with hard
constraints for inverse design", 2021). Other experts, and outputs without initial data (the
pressure), are the network itself. The initial-condition term then no longer competes with
the residual.

:class:`InitialConstraint` is applied by :meth:`BatchedMLP.forward` (so the autograd engine,
evaluation and diagnostics see the constrained outputs) and by :class:`ConstrainedFields`,
which forms the derivatives of the product for the Taylor-mode engine. The data's derivatives
come from autograd on g alone (no weights in it), with a graph, so ``grad_of`` stays exact.

g and its derivatives do not change while the points stay the same, but autograd through the
data (an exact solution with exponentials and products, for Navier-Stokes) costs more than
the networks' own Taylor sweep. With ``constant_data`` (the training loss, unless a condition
differentiates the residual in x) they are computed once per point set and kept, as
constants, by the constraint (:meth:`InitialConstraint.cached`): a 3D Beltrami step went from
2.24x to 0.97x the CPU time of one without the constraint.
"""
from __future__ import annotations

import copy

import torch

from ddpinn.nn.derivatives import _grad


def point_set_key(x: torch.Tensor) -> tuple:
    """A key of the point set ``x`` for caches of weight-free data: its storage, layout,
    version counter (points moved in place are a new set), dtype and device."""
    return (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x._version, x.dtype,
            str(x.device))


POINT_SETS_KEPT = 4  # the few newest point sets a constraint keeps its data for


def cached_per_point_set(cache: dict, x: torch.Tensor, make):
    """``cache``'s entry for the point set ``x`` (:func:`point_set_key`), made by
    ``make(x)`` when missing; the oldest entries go beyond :data:`POINT_SETS_KEPT`."""
    key = point_set_key(x)
    entry = cache.get(key)
    if entry is None:
        while len(cache) >= POINT_SETS_KEPT:
            cache.pop(next(iter(cache)))
        entry = cache[key] = make(x)
    return entry


class InitialConstraint:
    """The map N -> g + s N of the experts of one rank.

    Parameters
    ----------
    data : callable, x (E, N, d) -> Tensor (E, N, m), the initial data at the space
        coordinates of x (at t0, whatever x's time)
    outputs : list of bool, length m, which outputs have initial data
    time_axis : int, column of t in x
    t0 : float, the initial time
    first : Tensor (E,), 1.0 for experts whose box starts at t0, else 0.0
    tau : Tensor (E,), time length of each expert's box
    """

    def __init__(self, data, outputs, time_axis: int, t0: float, first, tau):
        self.data = data
        self.outputs = [bool(v) for v in outputs]
        self.time_axis = int(time_axis)
        self.t0 = float(t0)
        self.first = torch.as_tensor(first)[:, None]  # (E, 1)
        # Slope of s along t on first-slab experts, 0 elsewhere (s = 1 there).
        self.slope = self.first / torch.as_tensor(tau)[:, None]  # (E, 1)
        self.column = torch.tensor(self.outputs)  # (m,) bool
        self._cache = {}  # point set -> _DataCache, see cached()

    def cached(self, x: torch.Tensor) -> "_DataCache":
        """The data and its derivatives at the points ``x`` (E, N, d), computed once per
        point set: keyed by the storage, layout and version counter of ``x`` (points moved
        in place, or new points, are a new set), and holding ``x`` so that its memory is not
        reused while the entry lives. The few newest sets are kept."""
        return cached_per_point_set(self._cache, x, lambda pts: _DataCache(self, pts))

    def fields(self, inner, x: torch.Tensor, constant_data: bool = False):
        """The Fields of the constrained outputs from those of the networks (``inner``)."""
        return ConstrainedFields(inner, self, x, constant_data=constant_data)

    def repeat_experts(self, n: int) -> "InitialConstraint":
        """A copy with every expert repeated ``n`` times (expert e's copies at e*n ..
        e*n+n-1): ``first`` and ``slope`` (E n, 1), and an empty data cache."""
        out = copy.copy(self)
        out.first = self.first.repeat_interleave(n, 0)
        out.slope = self.slope.repeat_interleave(n, 0)
        out._cache = {}
        return out

    def to(self, device=None, dtype=None) -> "InitialConstraint":
        self.first = self.first.to(device=device, dtype=dtype)
        self.slope = self.slope.to(device=device, dtype=dtype)
        self.column = self.column.to(device=device)
        return self

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """s: (E, N); (t - t0) / tau on first-slab experts, 1 elsewhere."""
        t = x[..., self.time_axis]
        return 1.0 + self.first * ((t - self.t0) * self.slope - 1.0)

    def masked_data(self, x: torch.Tensor) -> torch.Tensor:
        """g on first-slab experts and constrained outputs, 0 elsewhere: (E, N, m)."""
        g = self.data(x)
        return g * (self.first[..., None] * self.column.to(g.dtype))

    def combine(self, net: torch.Tensor, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """g + s N on the constrained outputs, N elsewhere: net (E, N, m), s (E, N) from
        :meth:`scale`, g (E, N, m) from :meth:`masked_data` -> (E, N, m)."""
        col = self.column.to(net.dtype)
        return net * (1.0 + col * (s[..., None] - 1.0)) + g

    def apply(self, x: torch.Tensor, net: torch.Tensor) -> torch.Tensor:
        """Constrained outputs (E, N, m) from the networks' outputs ``net`` (E, N, m)."""
        return self.combine(net, self.scale(x), self.masked_data(x))


def initial_constraint(pde, params, boxes, time_axis: int, t0: float, dtype, device):
    """The :class:`InitialConstraint` of experts with boxes ``boxes`` (length E).

    Raises ValueError when the PDE has no initial data to impose.
    """
    first = torch.tensor([1.0 if abs(b.lower[time_axis] - t0) <= 1e-12 * max(1.0, abs(t0))
                          else 0.0 for b in boxes], dtype=dtype)
    tau = torch.tensor([b.upper[time_axis] - b.lower[time_axis] for b in boxes], dtype=dtype)
    probe = torch.zeros(1, len(pde.axes), dtype=dtype)
    _, mask = pde.boundary_data(probe, time_axis, 0, params)
    if not any(mask):
        raise ValueError(f"PDE {pde.name!r} gives no initial data: field "
                         f"'network.hard_initial' needs some")

    def data(x):
        # The data at (x, t0), never at x's own time: a PDE's initial data may be its exact
        # solution, which must not leak into later times.
        at_t0 = torch.cat([x[..., :time_axis], torch.full_like(x[..., time_axis:time_axis + 1],
                                                               t0), x[..., time_axis + 1:]],
                          dim=-1)
        return pde.boundary_data(at_t0, time_axis, 0, params)[0]

    return InitialConstraint(data, mask, time_axis, t0, first, tau).to(device, dtype)


class _DataCache:
    """g at one point set, with its graph to a private leaf of the points, and the
    derivatives of g computed so far (first ones with their graph, for second ones)."""

    def __init__(self, constraint: InitialConstraint, x: torch.Tensor):
        self.x = x  # keeps the storage alive: the key's address is not reused meanwhile
        self.gx = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            self.g = constraint.masked_data(self.gx)
        self.g_const = self.g.detach()
        self.dg = {}  # (k, a) -> (E, N), with a graph to gx
        self.d2g = {}  # (k, a, b) -> (E, N), constant


class ConstrainedFields:
    """Derivatives of g + s N from those of the networks (the Fields interface).

    Parameters
    ----------
    inner : TaylorFields (or Fields) of the unconstrained networks at x
    constraint : InitialConstraint
    x : Tensor (E, N, d), the points of ``inner``
    constant_data : bool, take g and its derivatives as constants kept per point set
        (:meth:`InitialConstraint.cached`); then ``grad_of`` misses their x-derivatives, so
        a loss that differentiates the residual in x must not use it

    s is linear in t, so d s = slope along t only and its second derivatives vanish:
    d_a u = s d_a N + [a = t] slope N + d_a g, and
    d_ab u = s d_ab N + [a = t] slope d_b N + [b = t] slope d_a N + d_ab g.
    """

    def __init__(self, inner, constraint: InitialConstraint, x: torch.Tensor,
                 constant_data: bool = False):
        self.inner, self.c, self.x = inner, constraint, x
        self._const = constraint.cached(x) if constant_data else None
        self.axes, self.outputs = inner.axes, inner.outputs
        self._k, self._a = inner._k, inner._a  # names or indices -> indices
        self.ta = constraint.time_axis
        self._s = constraint.scale(x)  # (E, N)
        self._u = None
        self._g = None  # (E, N, m), with a graph to x when x requires grad
        self._gx = None  # leaf the data's derivatives are taken at
        self._dg = {}  # (k, a) -> (E, N)
        self._d2g = {}  # (k, a, b) -> (E, N)

    def _constrained(self, k: int) -> bool:
        return self.c.outputs[k]

    # -- the data and its derivatives (no weights: autograd on g alone) ---------------------
    def _data(self) -> torch.Tensor:
        if self._const is not None:
            return self._const.g_const
        if self._g is None:
            x = self.x if self.x.requires_grad else self.x.detach().requires_grad_(True)
            with torch.enable_grad():
                self._gx = x
                self._g = self.c.masked_data(x)
        return self._g

    def _dgrad(self, k: int, a: int) -> torch.Tensor:
        if self._const is not None:
            return self._const_dgrad(k, a).detach()
        if (k, a) not in self._dg:
            g = self._data()
            with torch.enable_grad():
                full = _grad(g[..., k], self._gx)
            for b in range(full.shape[-1]):
                self._dg[(k, b)] = full[..., b]
        return self._dg[(k, a)]

    def _const_dgrad(self, k: int, a: int) -> torch.Tensor:
        """d_a g_k with its graph to the cache's leaf (never to x)."""
        c = self._const
        if (k, a) not in c.dg:
            with torch.enable_grad():
                full = _grad(c.g[..., k], c.gx)
            for b in range(full.shape[-1]):
                c.dg[(k, b)] = full[..., b]
        return c.dg[(k, a)]

    def _dgrad2(self, k: int, a: int, b: int) -> torch.Tensor:
        key = (k, min(a, b), max(a, b))
        if self._const is not None:
            c = self._const
            if key not in c.d2g:
                first = self._const_dgrad(k, key[1])
                with torch.enable_grad():
                    row = _grad(first, c.gx).detach()
                for j in range(row.shape[-1]):
                    c.d2g[(k, min(j, key[1]), max(j, key[1]))] = row[..., j]
            return c.d2g[key]
        if key not in self._d2g:
            first = self._dgrad(k, key[1])
            with torch.enable_grad():
                row = _grad(first, self._gx)
            for c in range(row.shape[-1]):
                self._d2g[(k, min(c, key[1]), max(c, key[1]))] = row[..., c]
        return self._d2g[key]

    # -- the Fields interface ----------------------------------------------------------------
    @property
    def u(self) -> torch.Tensor:
        """Constrained outputs (E, N, m)."""
        if self._u is None:
            self._u = self.c.combine(self.inner.u, self._s, self._data())
        return self._u

    def value(self, comp) -> torch.Tensor:
        return self.u[..., self._k(comp)]

    def d(self, comp, axis) -> torch.Tensor:
        k, a = self._k(comp), self._a(axis)
        if not self._constrained(k):
            return self.inner.d(k, a)
        out = self._s * self.inner.d(k, a) + self._dgrad(k, a)
        if a == self.ta:
            out = out + self.c.slope * self.inner.value(k)
        return out

    def grad(self, comp) -> torch.Tensor:
        k = self._k(comp)
        if not self._constrained(k):
            return self.inner.grad(k)
        return torch.stack([self.d(k, a) for a in range(len(self.axes))], dim=-1)

    def d2(self, comp, a1, a2) -> torch.Tensor:
        k, a, b = self._k(comp), self._a(a1), self._a(a2)
        if not self._constrained(k):
            return self.inner.d2(k, a, b)
        out = self._s * self.inner.d2(k, a, b) + self._dgrad2(k, a, b)
        if a == self.ta:
            out = out + self.c.slope * self.inner.d(k, b)
        if b == self.ta:
            out = out + self.c.slope * self.inner.d(k, a)
        return out

    def hess_row(self, comp, axis) -> torch.Tensor:
        k, a = self._k(comp), self._a(axis)
        if not self._constrained(k):
            return self.inner.hess_row(k, a)
        return torch.stack([self.d2(k, a, b) for b in range(len(self.axes))], dim=-1)

    def laplacian(self, comp, axes=None) -> torch.Tensor:
        axes = axes if axes is not None else [a for a in self.axes if a != "t"]
        idx = [self._a(a) for a in axes]
        k = self._k(comp)
        if not self._constrained(k):
            return self.inner.laplacian(k, axes)
        out = self._s * self.inner.laplacian(k, axes)
        for a in idx:
            out = out + self._dgrad2(k, a, a)
        if self.ta in idx:
            out = out + 2.0 * self.c.slope * self.inner.d(k, self.ta)
        return out

    def grad_of(self, y: torch.Tensor) -> torch.Tensor:
        """Gradient of a per-point quantity y (E, N) -> (E, N, d), by autograd."""
        if not self.x.requires_grad:
            raise RuntimeError("ConstrainedFields.grad_of needs x.requires_grad (it uses "
                               "autograd)")
        return _grad(y, self.x)

"""Forward (Taylor-mode) derivatives of the batched MLP experts.

:class:`TaylorFields` has the interface of the autograd :class:`~ddpinn.nn.derivatives.Fields`
(``x``, ``u``, ``axes``, ``outputs``; ``value``, ``grad``, ``d``, ``hess_row``, ``d2``,
``laplacian``, ``grad_of``), so PDE residuals and interface quantities work unchanged. Instead
of differentiating the output graph again and again (nested autograd), it pushes derivatives
forward through the stacked weights of :class:`~ddpinn.nn.experts.BatchedMLP`, for all experts
and points at once (``bmm`` per layer, no Python loop over experts or points):

=========================  ==================================================  =============
quantity                   recurrence per hidden layer, ``h' = act(z)``         shape
=========================  ==================================================  =============
value                      ``z = h W + b``                                     (E, N, H)
first derivatives          ``dz_a = dh_a W``,  ``dh'_a = act'(z) dz_a``        (E, N, d, H)
second-order channel ``k`` ``d2z_k = d2h_k W``,                                (E, N, K, H)
                           ``d2h'_k = act''(z) Q_k(dz) + act'(z) d2z_k``
=========================  ==================================================  =============

A second-order channel is a sum of pairs of axes, ``k = ((a1, b1), (a2, b2), ...)``, meaning
``sum_i d^2 / d a_i d b_i`` with ``Q_k(dz) = sum_i dz_{a_i} dz_{b_i}``: a single pair gives one
Hessian entry, the pairs ``(a, a)`` over the space axes give the Laplacian directly (the
"forward Laplacian": one channel instead of one per axis).

Everything is computed lazily and incrementally, each level reusing the previous one: the first
access to ``u``/``value`` runs the value pass (the same ops as ``model(x)``, so ``u`` is
identical to it), the first first derivative adds the Jacobian tangents (all ``d`` axes at once,
reusing the stored pre-activations), and each request for second derivatives adds just the
channels not computed yet (reusing the stored first-order tangents). Nothing is computed twice.

The input encoding is differentiated analytically: the per-subdomain normalisation is affine
(derivative ``1 / half_width``, constant over the points, so the first layer's tangents are
one row of ``W`` per axis and its second-order input is zero), periodic ``cos/sin`` features
and random Fourier features have closed-form first and second derivatives.

All quantities are differentiable torch ops (two small custom autograd functions save memory
traffic in the backward pass and are themselves differentiable): the training backward pass is
plain autograd through this forward computation, and so is :meth:`TaylorFields.grad_of` (the
gradient of an arbitrary per-point quantity, used by the gPINN condition ``residual_gradient``),
which needs ``x.requires_grad``. Returned tensors may be views of shared results: do not modify
them in place.

:func:`make_fields` picks the engine: Taylor mode for a :class:`BatchedMLP` with a known
activation, autograd :class:`Fields` for anything else (other architectures, subclasses that
override ``forward``/``encode``) or when asked for ``"autograd"``.
"""
from __future__ import annotations

import logging
import math
import time
import weakref

import torch
from torch import nn

from ddpinn.nn.batched import baddbmm, bmm
from ddpinn.nn.constraints import ConstrainedFields
from ddpinn.nn.derivatives import Fields, _grad
from ddpinn.nn.experts import ACTIVATIONS, BatchedMLP

log = logging.getLogger("ddpinn")

#: Derivative engines a case can choose (``network.derivatives``).
ENGINES = ("taylor", "autograd")

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# -- activations: act'(z) from (z, h = act(z)); act''(z) from (z, h, act'(z)) ---------------------
def _tanh_1(z, h):
    return 1 - h * h


def _tanh_2(z, h, a1):
    return -2 * h * a1


def _sin_1(z, h):
    return torch.cos(z)


def _sin_2(z, h, a1):
    return -h


def _silu_1(z, h):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _silu_2(z, h, a1):
    s = torch.sigmoid(z)
    return s * (1 - s) * (2 + z * (1 - 2 * s))


def _gelu_1(z, h):
    # gelu(z) = z Phi(z) (exact, erf form): gelu' = Phi + z phi
    cdf = 0.5 * (1 + torch.erf(z * _INV_SQRT_2))
    return cdf + z * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def _gelu_2(z, h, a1):
    # gelu'' = phi (2 - z^2)
    return torch.exp(-0.5 * z * z) * _INV_SQRT_2PI * (2 - z * z)


#: activation name -> (act', act'') as functions of (z, act(z)[, act'(z)])
ACTIVATION_DERIVATIVES = {"tanh": (_tanh_1, _tanh_2), "sin": (_sin_1, _sin_2),
                          "silu": (_silu_1, _silu_2), "gelu": (_gelu_1, _gelu_2)}


def _activation_name(model) -> str | None:
    for name, fn in ACTIVATIONS.items():
        if model.activation is fn and name in ACTIVATION_DERIVATIVES:
            return name
    return None


def supports_taylor(model) -> bool:
    """True for a :class:`BatchedMLP` (forward and encoding not overridden) with a
    supported activation."""
    cls = type(model)
    return (isinstance(model, BatchedMLP) and cls.forward is BatchedMLP.forward
            and cls.encode is BatchedMLP.encode and _activation_name(model) is not None)


def make_fields(model: nn.Module, x: torch.Tensor, axes, outputs, engine: str = "taylor",
                compile: bool = False, constant_data: bool = False):
    """Outputs and derivatives of ``model`` at ``x`` (E, N, d) with the chosen engine.

    ``"taylor"`` gives :class:`TaylorFields` where the model supports it and autograd
    :class:`Fields` otherwise; ``"autograd"`` always gives :class:`Fields`. ``x`` should
    require grad (autograd engine: always; Taylor engine: for ``grad_of``). With ``compile``
    the Taylor engine runs as one compiled sweep (:class:`TaylorSweep`, kept per model);
    its results allow one backward pass, not two (no ``grad_of`` in the loss). With
    ``constant_data`` a hard initial condition's data and its derivatives are kept per point
    set as constants (:class:`~ddpinn.nn.constraints.ConstrainedFields`; not with
    ``grad_of``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown derivative engine {engine!r}; choose one of: "
                         f"{', '.join(ENGINES)}")
    if engine == "taylor" and supports_taylor(model):
        sweep = TaylorSweep.of(model, axes, outputs) if compile else None
        fields = TaylorFields(model, x, axes, outputs, sweep=sweep)
        transform = getattr(model, "output_transform", None)
        return fields if transform is None else \
            ConstrainedFields(fields, transform, x, constant_data=constant_data)
    return Fields(x, model(x), axes, outputs)


class TaylorSweep:
    """The Taylor-mode forward sweep of one model as a single ``torch.compile``-d graph.

    A sweep computes the values, the whole Jacobian and the second-order channels ``keys``
    at once; the compiler fuses the element-wise chain-rule products of every layer (forward
    and backward) into a few loops, where the eager engine runs one kernel per product.
    ``keys`` is learned: the first fields of a sweep run eagerly and record the channels
    asked for, so the first compilation already has them; a channel first asked for later is
    computed eagerly that once and is part of every later sweep (one recompilation).

    The graph allows one backward pass (the training step's), not a second one: a loss that
    contains :meth:`TaylorFields.grad_of` needs the eager engine.
    """

    _by_model = weakref.WeakKeyDictionary()  # model -> {(axes, outputs): TaylorSweep}

    def __init__(self, axes, outputs):
        self.axes, self.outputs = tuple(axes), tuple(outputs)
        self.keys: list = []
        self.recorded = False   # keys recorded by a first, eager evaluation
        self._compiled = torch.compile(_sweep, dynamic=False)
        self._seen: set = set()  # (shape, dtype, keys) already compiled for

    @classmethod
    def of(cls, model, axes, outputs) -> "TaylorSweep":
        """The sweep kept for ``model`` and these axis and output names."""
        sweeps = cls._by_model.setdefault(model, {})
        key = (tuple(axes), tuple(outputs))
        if key not in sweeps:
            sweeps[key] = cls(axes, outputs)
        return sweeps[key]

    def __call__(self, model, x):
        """Values (E, N, m), Jacobian (E, N, d, m) and the channels ``keys`` (E, N, K, m) or
        None, at x (E, N, d)."""
        keys = tuple(self.keys)
        variant = (tuple(x.shape), x.dtype, keys)
        new = variant not in self._seen
        if new:  # a new shape or channel set compiles (seconds): say so, the run is not stuck
            log.info("compiling the Taylor sweep for %d x %d points (second-order channels: "
                     "%d)", x.shape[0], x.shape[1], len(keys))
            t0 = time.perf_counter()
        out = self._compiled(model, x, self.axes, self.outputs, keys)
        if new:
            self._seen.add(variant)
            log.info("compiled the Taylor sweep in %.1f s", time.perf_counter() - t0)
        return out


def _sweep(model, x, axes, outputs, keys):
    fields = TaylorFields(model, x, axes, outputs)
    second = None
    if keys:
        second = torch.stack([torch.stack(v, dim=-1) for v in fields._channels(list(keys))], 2)
    return fields.u, fields._jacobian(), second


# -- second-order channels ---------------------------------------------------------------------
def _pair(a: int, b: int) -> tuple:
    return (a, b) if a <= b else (b, a)


class _DiagQuadratic(torch.autograd.Function):
    """q_k = sum over the axes of channel k of t_a^2 (repeated axes count repeatedly).

    t: (E, N', d, H) -> (E, N', K, H). One pass each way, where autograd of
    ``t[:, :, S].square().sum(2)`` takes several and materialises zero-filled gradients of the
    slices. The backward is made of differentiable ops, so double backward (``grad_of``)
    works.
    """

    @staticmethod
    def forward(ctx, t, channels):
        ctx.save_for_backward(t)
        ctx.channels = channels
        E, n, d, H = t.shape
        out = t.new_empty(E, n, len(channels), H)
        for k, axes in enumerate(channels):
            q = out[:, :, k]
            torch.mul(t[:, :, axes[0]], t[:, :, axes[0]], out=q)
            for a in axes[1:]:
                q.addcmul_(t[:, :, a], t[:, :, a])
        return out

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        d = t.shape[2]
        # d q_k / d t_a = 2 count_ka t_a: gradient of t_a = t_a * sum_k 2 count_ka g_k.
        coef = []
        for a in range(d):
            c = None
            for k, axes in enumerate(ctx.channels):
                n = axes.count(a)
                if n:
                    c = g[:, :, k] * (2.0 * n) if c is None else c + g[:, :, k] * (2.0 * n)
            coef.append(c)
        if torch.is_grad_enabled():  # double backward: keep it functional
            zero = torch.zeros_like(g[:, :, 0])
            return t * torch.stack([zero if c is None else c for c in coef], dim=2), None
        gt = torch.empty_like(t)
        for a, c in enumerate(coef):
            if c is None:
                gt[:, :, a].zero_()
            else:
                torch.mul(t[:, :, a], c, out=gt[:, :, a])
        return gt, None


class _ScaleTangents(torch.autograd.Function):
    """dh = a1 * dz for every direction: a1 (E, N, H), dz (E, N', k, H) -> (E, N, k, H).

    Autograd of the broadcast product allocates a (E, N, k, H) temporary for the gradient of
    a1 before reducing it; this backward accumulates it direction by direction instead.
    Differentiable backward (double backward works).
    """

    @staticmethod
    def forward(ctx, a1, dz):
        ctx.save_for_backward(a1, dz)
        return a1[:, :, None] * dz

    @staticmethod
    def backward(ctx, g):
        a1, dz = ctx.saved_tensors
        g_dz = g * a1[:, :, None]
        if dz.shape[1] != g.shape[1]:  # dz broadcast over the points (first layer)
            g_dz = g_dz.sum(1, keepdim=True)
        if torch.is_grad_enabled():
            return (g * dz).sum(2), g_dz
        g_a1 = g[:, :, 0] * dz[:, :, 0]
        for a in range(1, dz.shape[2]):
            g_a1.addcmul_(g[:, :, a], dz[:, :, a])
        return g_a1, g_dz


def _quadratic(t: torch.Tensor, keys: list) -> torch.Tensor:
    """Q_k(t) = sum over the pairs (a, b) of channel k of t_a * t_b.

    t: (E, N', d, H) -> (E, N', K, H) for K = len(keys).
    """
    # Under torch.compile the generic products below: the compiler fuses them, and it cannot
    # trace the custom function's out= kernels.
    if all(a == b for key in keys for a, b in key) and not torch.compiler.is_compiling():
        return _DiagQuadratic.apply(t, tuple(tuple(a for a, _ in key) for key in keys))
    out = []
    for key in keys:
        val = None
        for a, b in key:
            term = t[:, :, a].square() if a == b else t[:, :, a] * t[:, :, b]
            val = term if val is None else val + term
        out.append(val)
    return torch.stack(out, dim=2)


def _linear(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Tangents through a linear map, no bias: t (E, N', k, n_in) @ w (E, n_in, n_out)."""
    E, n, k, f = t.shape
    return bmm(t.reshape(E, n * k, f), w).view(E, n, k, w.shape[-1])


class TaylorFields:
    """Outputs and derivatives of a :class:`BatchedMLP` at points x, by forward propagation.

    Parameters
    ----------
    model : BatchedMLP with E experts
    x : Tensor, shape (E, N, d); must require grad only for :meth:`grad_of`
    axes : tuple of str, length d, e.g. ("x", "y", "t")
    outputs : tuple of str, length m, e.g. ("u", "v", "p")

    Same interface and caching as :class:`~ddpinn.nn.derivatives.Fields`; derivatives keep
    their graph (the training backward pass and :meth:`grad_of` differentiate them).
    """

    #: Compute ``laplacian`` as one second-order channel (sum of the diagonal pairs) unless
    #: the individual diagonal entries are already known.
    forward_laplacian = True

    def __init__(self, model, x, axes, outputs, sweep=None):
        name = _activation_name(model)
        if not isinstance(model, BatchedMLP) or name is None:
            raise TypeError("TaylorFields needs a BatchedMLP with one of the activations "
                            f"{', '.join(ACTIVATION_DERIVATIVES)}; use make_fields() for a "
                            "fallback to autograd")
        self.model = model
        self.x = x
        self.axes = {n: i for i, n in enumerate(axes)}
        self.outputs = {n: i for i, n in enumerate(outputs)}
        if x.dim() != 3 or x.shape[-1] != len(self.axes):
            raise ValueError(f"x must have shape (E, N, {len(self.axes)}), got {tuple(x.shape)}")
        self._recording = None  # the sweep whose channels this eager evaluation records
        if sweep is not None and not sweep.recorded:
            sweep.recorded = True
            self._recording, sweep = sweep, None
        self._sweep = sweep     # TaylorSweep or None (eager)
        self._eager = None      # eager fields for channels outside the sweep
        self._derivs_fn = ACTIVATION_DERIVATIVES[name]
        self._tanh = name == "tanh"
        self._u = None
        self._enc = None        # h_0 = encode(x): (E, N, enc)
        self._z = []            # pre-activations of the hidden layers: (E, N, H)
        self._h = []            # their activations
        self._acts = []         # (act'(z), act''(z) or None) per hidden layer
        self._dz = None         # first-order tangents of the hidden pre-activations (E, N', d, H)
        self._jac = None        # (E, N, d, m)
        self._u_cols = None     # u.unbind(-1): (E, N) per output
        self._jac_cols = None   # [axis][output] -> (E, N)
        self._enc_jac = None    # (E, N', d, enc)
        self._second = {}       # channel -> one (E, N) tensor per output
        self._rows = {}

    # -- names ------------------------------------------------------------------------------
    def _k(self, comp) -> int:
        return self.outputs[comp] if isinstance(comp, str) else int(comp)

    def _a(self, axis) -> int:
        return self.axes[axis] if isinstance(axis, str) else int(axis)

    # -- level 0: values ---------------------------------------------------------------------
    @property
    def u(self) -> torch.Tensor:
        """The experts' outputs (E, N, m), the same ops (and bits) as ``model(x)`` (the
        compiled sweep: the same values to rounding)."""
        if self._u is None and self._sweep is not None:
            self._run_sweep()
        if self._u is None:
            m = self.model
            h = self._enc = m.encode(self.x)
            last = len(m.weights) - 1
            for i, (w, b) in enumerate(zip(m.weights, m.biases)):
                z = baddbmm(b, h, w)
                if i < last:
                    h = m.activation(z)
                    self._z.append(z)
                    self._h.append(h)
                    self._acts.append(None)
                else:
                    h = z
            self._u = h
        return self._u

    def _act(self, layer: int, second: bool = False):
        """act'(z) and, when ``second``, act''(z) of a hidden layer, (E, N, H) each."""
        first_fn, second_fn = self._derivs_fn
        z, h = self._z[layer], self._h[layer]
        if self._acts[layer] is None:
            self._acts[layer] = (first_fn(z, h), None)
        a1, a2 = self._acts[layer]
        if second and a2 is None:
            a2 = second_fn(z, h, a1)
            self._acts[layer] = (a1, a2)
        return a1, a2

    # -- level 1: Jacobian -------------------------------------------------------------------
    def _encoding_jacobian(self) -> torch.Tensor:
        """d encode(x) / dx: (E, N', d, enc), N' = 1 when it does not depend on the point."""
        m, x = self.model, self.x
        E, N, d = x.shape
        enc = self._enc
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        parts = []
        col = 0
        if m.plain_axes:
            # (d, n_plain) * (E, 1, d, 1): 1 / half_width on the plain axes.
            parts.append(eye[:, m.plain_axes] / m.half_width[..., None])
            col += len(m.plain_axes)
        if m.periodic_axes:
            P, K = m.periodic_freq.shape
            cos = enc[..., col:col + P * K].unflatten(-1, (P, K))
            sin = enc[..., col + P * K:col + 2 * P * K].unflatten(-1, (P, K))
            col += 2 * P * K
            dphase = eye[:, m.periodic_axes, None] * m.periodic_freq  # (d, P, K)
            parts += [(-sin[:, :, None] * dphase).flatten(-2),
                      (cos[:, :, None] * dphase).flatten(-2)]
        jac = self._cat(parts)
        if m.n_fourier:
            F = m.n_fourier
            sin, cos = enc[..., col:col + F], enc[..., col + F:col + 2 * F]
            jp = _linear(jac, m.fourier_b)  # (E, N', d, F)
            jac = torch.cat([jac.expand(E, N, d, col), cos[:, :, None] * jp,
                             -sin[:, :, None] * jp], dim=-1)
        return jac

    @staticmethod
    def _cat(parts):
        if len(parts) == 1:
            return parts[0]
        n = max(p.shape[1] for p in parts)
        return torch.cat([p.expand(p.shape[0], n, *p.shape[2:]) for p in parts], dim=-1)

    def _jacobian(self) -> torch.Tensor:
        """All first derivatives: (E, N, d, m)."""
        if self._jac is None and self._sweep is not None:
            self._run_sweep()
        if self._jac is None:
            self.u  # noqa: B018  (level 0)
            m = self.model
            self._enc_jac = self._encoding_jacobian()
            dz = _linear(self._enc_jac, m.weights[0])
            self._dz = []
            for layer in range(len(self._z)):
                self._dz.append(dz)
                a1, _ = self._act(layer)
                dh = (a1[:, :, None] * dz if torch.compiler.is_compiling()
                      else _ScaleTangents.apply(a1, dz))
                dz = _linear(dh, m.weights[layer + 1])
            E, N, d = self.x.shape
            self._jac = dz.expand(E, N, *dz.shape[2:])
        return self._jac

    # -- level 2: second-order channels -------------------------------------------------------
    def _encoding_second(self, keys) -> torch.Tensor | None:
        """Second-order channels of the encoding: (E, N, K, enc), or None where all zero
        (the affine normalisation alone)."""
        m, x = self.model, self.x
        E, N, d = x.shape
        enc = self._enc
        col = len(m.plain_axes)
        parts = []
        if col:
            parts.append(None)  # affine: zero
        if m.periodic_axes:
            P, K = m.periodic_freq.shape
            cos = enc[..., col:col + P * K].unflatten(-1, (P, K))
            sin = enc[..., col + P * K:col + 2 * P * K].unflatten(-1, (P, K))
            col += 2 * P * K
            # Count of pairs (a, a) on each periodic axis, per channel: (K_ch, P).
            count = torch.tensor([[sum(1 for a, b in key if a == b == ax)
                                   for ax in m.periodic_axes] for key in keys],
                                 dtype=x.dtype, device=x.device)
            coef = count[:, :, None] * m.periodic_freq.square()  # (K_ch, P, K)
            parts += [(-cos[:, :, None] * coef).flatten(-2), (-sin[:, :, None] * coef).flatten(-2)]
        if all(p is None for p in parts):
            base = None
        else:
            shape = (E, N, len(keys))
            base = torch.cat([p if p is not None else x.new_zeros(*shape, len(m.plain_axes))
                              for p in parts], dim=-1)
        if not m.n_fourier:
            return base
        F = m.n_fourier
        sin, cos = enc[..., col:col + F][:, :, None], enc[..., col + F:col + 2 * F][:, :, None]
        q = _quadratic(_linear(self._enc_jac[..., :col], m.fourier_b), keys)  # (E, N', K, F)
        ds, dc = -sin * q, -cos * q
        if base is not None:
            hp = _linear(base, m.fourier_b)  # (E, N, K, F)
            ds, dc = ds + cos * hp, dc - sin * hp
            return torch.cat([base, ds, dc], dim=-1)
        return torch.cat([x.new_zeros(E, N, len(keys), col), ds, dc], dim=-1)

    def _channels(self, keys) -> list:
        """Second-order outputs of each channel, one (E, N) tensor per output; the missing
        channels are computed together in one forward sweep."""
        if self._sweep is not None:
            return self._sweep_channels(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in self._second))
        if self._recording is not None:
            self._recording.keys.extend(k for k in missing if k not in self._recording.keys)
        if missing:
            self._jacobian()
            m = self.model
            d2h = self._encoding_second(missing)
            for layer in range(len(self._z)):
                fused = self._tanh and d2h is not None
                a1, a2 = self._act(layer, second=not fused)
                q = _quadratic(self._dz[layer], missing)
                if d2h is None:
                    d2h = a2[:, :, None] * q
                elif self._tanh:  # act'' = -2 h act': d2h = act' (d2z - 2 h q), fewer ops
                    d2z = _linear(d2h, m.weights[layer])
                    h = self._h[layer][:, :, None]
                    d2h = a1[:, :, None] * torch.addcmul(d2z, h, q, value=-2.0)
                else:
                    d2z = _linear(d2h, m.weights[layer])
                    d2h = torch.addcmul(a1[:, :, None] * d2z, a2[:, :, None], q)
            d2u = _linear(d2h, m.weights[-1])  # (E, N, K, m)
            # unbind, not indexing: one backward node instead of a zero-filled gradient per
            # slice taken by the PDE.
            for key, part in zip(missing, d2u.unbind(2)):
                self._second[key] = part.unbind(-1)
        return [self._second[k] for k in keys]

    # -- the compiled sweep ----------------------------------------------------------------
    def _run_sweep(self) -> None:
        u, jac, second = self._sweep(self.model, self.x)
        self._u, self._jac = u, jac
        if second is not None:
            for key, part in zip(self._sweep.keys, second.unbind(2)):
                self._second[key] = part.unbind(-1)

    def _sweep_channels(self, keys) -> list:
        """Channels from the sweep; those it lacks from eager fields (and from the sweep
        next time)."""
        self._jacobian()  # runs the sweep
        missing = list(dict.fromkeys(k for k in keys if k not in self._second))
        if missing:
            if self._eager is None:
                self._eager = TaylorFields(self.model, self.x, tuple(self.axes),
                                           tuple(self.outputs))
            for key, value in zip(missing, self._eager._channels(missing)):
                self._second[key] = value
            self._sweep.keys.extend(missing)
        return [self._second[k] for k in keys]

    # -- the Fields interface ----------------------------------------------------------------
    def value(self, comp) -> torch.Tensor:
        """Output ``comp`` (name or index): (E, N)."""
        if self._u_cols is None:
            self._u_cols = self.u.unbind(-1)
        return self._u_cols[self._k(comp)]

    def grad(self, comp) -> torch.Tensor:
        """All first derivatives of ``comp``: (E, N, d)."""
        return self._jacobian()[..., self._k(comp)]

    def d(self, comp, axis) -> torch.Tensor:
        """d comp / d axis: (E, N)."""
        if self._jac_cols is None:
            self._jac_cols = [t.unbind(-1) for t in self._jacobian().unbind(2)]
        return self._jac_cols[self._a(axis)][self._k(comp)]

    def hess_row(self, comp, axis) -> torch.Tensor:
        """Second derivatives d^2 comp / d axis d (every axis): (E, N, d)."""
        k, a = self._k(comp), self._a(axis)
        if (k, a) not in self._rows:
            keys = [(_pair(a, b),) for b in range(len(self.axes))]
            self._rows[(k, a)] = torch.stack([v[k] for v in self._channels(keys)], dim=-1)
        return self._rows[(k, a)]

    def d2(self, comp, a1, a2) -> torch.Tensor:
        """d^2 comp / d a1 d a2: (E, N)."""
        (v,) = self._channels([(_pair(self._a(a1), self._a(a2)),)])
        return v[self._k(comp)]

    def laplacian(self, comp, axes=None) -> torch.Tensor:
        """Sum of d^2 comp / d a^2 over ``axes`` (default: the space axes): (E, N)."""
        axes = axes if axes is not None else [a for a in self.axes if a != "t"]
        idx = sorted(self._a(a) for a in axes)
        k = self._k(comp)
        if not idx:
            return torch.zeros_like(self.value(k))
        singles = [((a, a),) for a in idx]
        if (len(idx) == 1 or not self.forward_laplacian
                or all(s in self._second for s in singles)):
            return sum(v[k] for v in self._channels(singles))
        (v,) = self._channels([tuple((a, a) for a in idx)])
        return v[k]

    def grad_of(self, y: torch.Tensor) -> torch.Tensor:
        """Gradient of any per-point quantity y: (E, N) -> (E, N, d).

        Autograd (reverse mode) through the forward quantities; ``x`` must require grad.
        """
        if not self.x.requires_grad:
            raise RuntimeError("TaylorFields.grad_of needs x.requires_grad (it uses autograd)")
        if self._sweep is not None:
            raise RuntimeError("TaylorFields.grad_of needs the eager engine: a loss with it "
                               "is differentiated twice, which a compiled sweep cannot be")
        return _grad(y, self.x)

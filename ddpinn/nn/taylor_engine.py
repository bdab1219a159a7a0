"""Forward (Taylor-mode) derivatives of the batched MLP experts, evaluated eagerly.

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

The input encoding is differentiated analytically, block by block of the model's
:class:`~ddpinn.nn.encoding.EncodingLayout` (``model.layout``, checked against the encoded
width): the per-subdomain normalisation is affine (derivative ``1 / half_width``, constant
over the points, so the first layer's tangents are one row of ``W`` per axis and its
second-order input is zero), periodic ``cos/sin`` features and random Fourier features have
closed-form first and second derivatives.

All quantities are differentiable torch ops (:mod:`ddpinn.nn.taylor_ops`): the training
backward pass is plain autograd through this forward computation, and so is
:meth:`TaylorFields.grad_of` (the gradient of an arbitrary per-point quantity, used by the
gPINN condition ``residual_gradient``), which needs ``x.requires_grad``. Returned tensors may
be views of shared results: do not modify them in place.
"""
from __future__ import annotations

import torch
from torch import nn

from ddpinn.nn.activations import ACTIVATION_DERIVATIVES, differentiable_activation
from ddpinn.nn.batched import baddbmm
from ddpinn.nn.derivatives import Fields, _grad
from ddpinn.nn.encoding import BASE_BLOCKS
from ddpinn.nn.taylor_ops import linear, pair, quadratic, scale_tangents


class TaylorFields:
    """Outputs and derivatives of a batched MLP at points x, by forward propagation.

    Parameters
    ----------
    model : a model whose ``supports_taylor()`` is true (:class:`BatchedMLP`), E experts
    x : Tensor, shape (E, N, d); must require grad only for :meth:`grad_of`
    axes : tuple of str, length d, e.g. ("x", "y", "t")
    outputs : tuple of str, length m, e.g. ("u", "v", "p")
    record : list or None
        Where to append the second-order channels asked for (a compiled sweep learns its
        channels from a first, eager evaluation: :mod:`ddpinn.nn.taylor_compiled`).

    Same interface and caching as :class:`~ddpinn.nn.derivatives.Fields`; derivatives keep
    their graph (the training backward pass and :meth:`grad_of` differentiate them).
    """

    #: Compute ``laplacian`` as one second-order channel (sum of the diagonal pairs) unless
    #: the individual diagonal entries are already known.
    forward_laplacian = True

    def __init__(self, model, x, axes, outputs, record=None):
        supported = getattr(model, "supports_taylor", None)
        if supported is None or not supported():
            raise TypeError("TaylorFields needs a model whose supports_taylor() is true (a "
                            "BatchedMLP with one of the activations "
                            f"{', '.join(ACTIVATION_DERIVATIVES)}); use make_fields() for a "
                            "fallback to autograd")
        self.model = model
        self.x = x
        self.axes = {n: i for i, n in enumerate(axes)}
        self.outputs = {n: i for i, n in enumerate(outputs)}
        if x.dim() != 3 or x.shape[-1] != len(self.axes):
            raise ValueError(f"x must have shape (E, N, {len(self.axes)}), got {tuple(x.shape)}")
        self._record = record
        name = differentiable_activation(model.activation)
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
        """The experts' outputs (E, N, m), the same ops (and bits) as ``model.network(x)``."""
        if self._u is None:
            m = self.model
            h = self._enc = m.encode(self.x)
            m.layout.check(h)  # the columns the derivatives below read are those encoded
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
    def _periodic_features(self):
        """cos and sin blocks of the encoding, (E, N, M) each."""
        layout = self.model.layout
        return (self._enc[..., layout.columns("periodic_cos")],
                self._enc[..., layout.columns("periodic_sin")])

    def _wavevectors(self) -> torch.Tensor:
        """d phase / dx: the periodic wavevectors with zero rows on plain axes, (d, M)."""
        m = self.model
        w = m.periodic_wavevectors
        out = w.new_zeros(self.x.shape[-1], w.shape[1])
        out[m.periodic_axes] = w
        return out

    def _encoding_jacobian(self) -> torch.Tensor:
        """d encode(x) / dx: (E, N', d, enc), N' = 1 when it does not depend on the point."""
        m, x, layout = self.model, self.x, self.model.layout
        E, N, d = x.shape
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        blocks = {}
        if m.plain_axes:
            # (d, n_plain) * (E, 1, d, 1): 1 / half_width on the plain axes.
            blocks["plain"] = eye[:, m.plain_axes] / m.half_width[..., None]
        if m.periodic_axes:
            cos, sin = self._periodic_features()
            dphase = self._wavevectors()  # (d, M)
            blocks["periodic_cos"] = -sin[:, :, None] * dphase
            blocks["periodic_sin"] = cos[:, :, None] * dphase
        jac = self._cat([blocks[b] for b in BASE_BLOCKS if b in blocks])
        if m.n_fourier:
            sin = self._enc[..., layout.columns("fourier_sin")]
            cos = self._enc[..., layout.columns("fourier_cos")]
            jp = linear(jac, m.fourier_b)  # (E, N', d, F)
            jac = torch.cat([jac.expand(E, N, d, layout.base_width), cos[:, :, None] * jp,
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
        if self._jac is None:
            self.u  # noqa: B018  (level 0)
            m = self.model
            self._enc_jac = self._encoding_jacobian()
            dz = linear(self._enc_jac, m.weights[0])
            self._dz = []
            for layer in range(len(self._z)):
                self._dz.append(dz)
                a1, _ = self._act(layer)
                dz = linear(scale_tangents(a1, dz), m.weights[layer + 1])
            E, N, d = self.x.shape
            self._jac = dz.expand(E, N, *dz.shape[2:])
        return self._jac

    # -- level 2: second-order channels -------------------------------------------------------
    def _encoding_second(self, keys) -> torch.Tensor | None:
        """Second-order channels of the encoding: (E, N, K, enc), or None where all zero
        (the affine normalisation alone)."""
        m, x, layout = self.model, self.x, self.model.layout
        E, N, d = x.shape
        blocks = {}
        if m.plain_axes:
            blocks["plain"] = None  # affine: zero
        if m.periodic_axes:
            cos, sin = self._periodic_features()
            # d2 phase terms of a channel: sum over its pairs of W[a] W[b], (K_ch, M).
            w = self._wavevectors()
            coef = torch.stack([sum(w[a] * w[b] for a, b in key) for key in keys])
            blocks["periodic_cos"] = -cos[:, :, None] * coef
            blocks["periodic_sin"] = -sin[:, :, None] * coef
        parts = [blocks[b] for b in BASE_BLOCKS if b in blocks]
        base = None
        if any(p is not None for p in parts):
            shape = (E, N, len(keys))
            base = torch.cat([p if p is not None else x.new_zeros(*shape, len(m.plain_axes))
                              for p in parts], dim=-1)
        if not m.n_fourier:
            return base
        col = layout.base_width
        sin = self._enc[..., layout.columns("fourier_sin")][:, :, None]
        cos = self._enc[..., layout.columns("fourier_cos")][:, :, None]
        q = quadratic(linear(self._enc_jac[..., :col], m.fourier_b), keys)  # (E, N', K, F)
        ds, dc = -sin * q, -cos * q
        if base is not None:
            hp = linear(base, m.fourier_b)  # (E, N, K, F)
            ds, dc = ds + cos * hp, dc - sin * hp
            return torch.cat([base, ds, dc], dim=-1)
        return torch.cat([x.new_zeros(E, N, len(keys), col), ds, dc], dim=-1)

    def _channels(self, keys) -> list:
        """Second-order outputs of each channel, one (E, N) tensor per output; the missing
        channels are computed together in one forward sweep."""
        missing = list(dict.fromkeys(k for k in keys if k not in self._second))
        if self._record is not None:
            self._record.extend(k for k in missing if k not in self._record)
        if missing:
            d2u = self._second_sweep(missing)
            # unbind, not indexing: one backward node instead of a zero-filled gradient per
            # slice taken by the PDE.
            for key, part in zip(missing, d2u.unbind(2)):
                self._second[key] = part.unbind(-1)
        return [self._second[k] for k in keys]

    def _second_sweep(self, keys) -> torch.Tensor:
        """Second-order channels ``keys`` of the outputs: (E, N, K, m)."""
        self._jacobian()
        m = self.model
        d2h = self._encoding_second(keys)
        for layer in range(len(self._z)):
            fused = self._tanh and d2h is not None
            a1, a2 = self._act(layer, second=not fused)
            q = quadratic(self._dz[layer], keys)
            if d2h is None:
                d2h = a2[:, :, None] * q
            elif self._tanh:  # act'' = -2 h act': d2h = act' (d2z - 2 h q), fewer ops
                d2z = linear(d2h, m.weights[layer])
                h = self._h[layer][:, :, None]
                d2h = a1[:, :, None] * torch.addcmul(d2z, h, q, value=-2.0)
            else:
                d2z = linear(d2h, m.weights[layer])
                d2h = torch.addcmul(a1[:, :, None] * d2z, a2[:, :, None], q)
        return linear(d2h, m.weights[-1])

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
            keys = [(pair(a, b),) for b in range(len(self.axes))]
            self._rows[(k, a)] = torch.stack([v[k] for v in self._channels(keys)], dim=-1)
        return self._rows[(k, a)]

    def d2(self, comp, a1, a2) -> torch.Tensor:
        """d^2 comp / d a1 d a2: (E, N)."""
        (v,) = self._channels([(pair(self._a(a1), self._a(a2)),)])
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
        return _grad(y, self.x)


#: Derivative engines a case can choose (``network.derivatives``).
ENGINES = ("taylor", "autograd")

#: The compiled sweep, registered by :mod:`ddpinn.nn.taylor_compiled` on import (it builds
#: on this module, so this module cannot import it).
SWEEPS: dict = {}


def supports_taylor(model) -> bool:
    """Whether ``model`` says the Taylor-mode engine can differentiate it."""
    answer = getattr(model, "supports_taylor", None)
    return bool(answer()) if callable(answer) else False


def make_fields(model: nn.Module, x: torch.Tensor, axes, outputs, engine: str = "taylor",
                compile: bool = False, constant_data: bool = False):
    """Outputs and derivatives of ``model`` at ``x`` (E, N, d) with the chosen engine.

    ``"taylor"`` gives :class:`TaylorFields` where the model supports it and autograd
    :class:`~ddpinn.nn.derivatives.Fields` otherwise; ``"autograd"`` always gives :class:`Fields`. ``x`` should
    require grad (autograd engine: always; Taylor engine: for ``grad_of``). With ``compile``
    the Taylor engine runs as one compiled sweep (``SWEEPS["compiled"]``:
    :class:`~ddpinn.nn.taylor_compiled.TaylorSweep`, kept per model);
    its results allow one backward pass, not two (no ``grad_of`` in the loss). With
    ``constant_data`` the data of an output transform (a hard initial or Dirichlet
    condition) and its derivatives are kept per point set as constants (its ``fields``:
    :class:`~ddpinn.nn.constraints.ConstrainedFields`,
    :class:`~ddpinn.nn.distance_constraint.DistanceFields`; not with ``grad_of``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown derivative engine {engine!r}; choose one of: "
                         f"{', '.join(ENGINES)}")
    if engine == "taylor" and supports_taylor(model):
        if compile:
            fields = SWEEPS["compiled"].of(model, axes, outputs).fields(model, x)
        else:
            fields = TaylorFields(model, x, axes, outputs)
        transform = getattr(model, "output_transform", None)
        return fields if transform is None else \
            transform.fields(fields, x, constant_data=constant_data)
    return Fields(x, model(x), axes, outputs)

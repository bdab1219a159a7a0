"""Tensor operations of the Taylor-mode engine: tangents through linear maps, and the
quadratic forms of the second-order channels, with two small custom autograd functions that
save memory traffic in the backward pass (and are themselves differentiable, so double
backward works).
"""
from __future__ import annotations

import torch

from ddpinn.nn.batched import bmm


def pair(a: int, b: int) -> tuple:
    """The axis pair (a, b) in canonical order (a <= b)."""
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


def quadratic(t: torch.Tensor, keys: list) -> torch.Tensor:
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


def linear(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Tangents through a linear map, no bias: t (E, N', k, n_in) @ w (E, n_in, n_out)."""
    E, n, k, f = t.shape
    return bmm(t.reshape(E, n * k, f), w).view(E, n, k, w.shape[-1])


def scale_tangents(a1: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """dh = act'(z) dz for every direction: a1 (E, N, H), dz (E, N', k, H) -> (E, N, k, H)."""
    # Under torch.compile the plain product: the compiler fuses it, and it cannot trace the
    # custom function.
    if torch.compiler.is_compiling():
        return a1[:, :, None] * dz
    return _ScaleTangents.apply(a1, dz)

"""Batched products and sums whose result for one expert does not depend on how many are batched.

A rank computes all its experts at once, batched along axis 0. For the loss trajectory to be
the same bits on any rank count, each expert's result must not depend on the batch size E
(the number of experts the rank owns) nor on the rank's thread count. Two of torch's CPU
kernels treat a batch of one differently:

* ``torch.bmm`` / ``torch.baddbmm`` hand a batch of one matrix to a plain GEMM and a larger
  batch to the BLAS's batched GEMM (MKL's ``gemm_batch``). They round differently: a single
  GEMM with one output column is computed as a matrix-vector product, and a single GEMM with a
  long contraction (the weight gradient ``h^T g``, summed over the points) is split over the
  threads, so its bits depend on the thread count. The batched kernel gives each item the same
  bits for any batch size from two on and any thread count.
* A sum with a single output (one expert's sum over its points) of at least 32768 elements is
  split over the threads (a two-pass reduction), whereas with two outputs or more each output
  is summed by one thread, in the same order whatever the thread count.

The functions here give a batch of one the batched kernel's bits: where a plain GEMM would
differ (see :func:`_plain_is_batched`), the product is evaluated as a batch of two (the same
matrices twice, as stride-0 views, and the first result kept), in the backward pass too; a
one-output sum is always evaluated as two. Gradients flow back through the views exactly (the
second item's gradient is zero). Batches of two or more go straight to torch. The price, on a
rank that owns a single expert only: the matrix-vector products of one-output layers, and with
several threads the weight-gradient products, are computed twice.
"""
from __future__ import annotations

import torch


def _pair(t: torch.Tensor) -> torch.Tensor:
    """(1, ...) -> (2, ...), the same item twice (a view)."""
    return t.expand(2, *t.shape[1:])


def _plain_is_batched(m: int, k: int, n: int) -> bool:
    """Whether a plain GEMM of one (m, k) @ (k, n) product has the batched kernel's bits.

    Measured with MKL (``tests/unit/test_batched.py`` checks it where the tests run): not
    with m, k or n equal to 1 (matrix-vector products), nor with more than one thread when
    the contraction k is the longest side (MKL splits it over the threads).
    """
    return min(m, k, n) > 1 and (k <= max(m, n) or torch.get_num_threads() == 1)


def _product(c, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """c + a @ b (c may be None) for E = 1 with the batched kernel's bits, no autograd."""
    if _plain_is_batched(a.shape[1], a.shape[2], b.shape[2]):
        return torch.bmm(a, b) if c is None else torch.baddbmm(c, a, b)
    if c is None:
        return torch.bmm(_pair(a), _pair(b))[:1]
    return torch.baddbmm(_pair(c), _pair(a), _pair(b))[:1]


class _OneExpert(torch.autograd.Function):
    """c + a @ b for a batch of one, every product (also those of the backward pass) with
    the bits of the batched kernel: the pair is formed only where a plain GEMM differs, so
    a rank with one expert pays for one extra product at most (the weight gradient, with
    several threads). Differentiable backward (double backward works)."""

    @staticmethod
    def forward(ctx, c, a, b):
        ctx.save_for_backward(a, b)
        ctx.c_rows = None if c is None else c.shape[1]
        return _product(c, a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_c, need_a, need_b = ctx.needs_input_grad
        gc = ga = gb = None
        if need_c:
            gc = g if ctx.c_rows != 1 else row_sum(g, 1).unsqueeze(1)
        if need_a:
            ga = bmm(g, b.transpose(1, 2))
        if need_b:
            gb = bmm(a.transpose(1, 2), g)
        return gc, ga, gb


def _one(c, a, b):
    if torch.compiler.is_compiling():  # traced: the plain pair, no branches on threads
        pa, pb = _pair(a), _pair(b)
        out = torch.bmm(pa, pb) if c is None else torch.baddbmm(_pair(c), pa, pb)
        return out[:1]
    (m, k), n = a.shape[1:], b.shape[2]
    if _plain_is_batched(m, k, n) and _plain_is_batched(m, n, k) and _plain_is_batched(k, m, n):
        # The product and both of its gradients: torch's own, at no extra cost.
        return torch.bmm(a, b) if c is None else torch.baddbmm(c, a, b)
    return _OneExpert.apply(c, a, b)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)``: a (E, n, k), b (E, k, m) -> (E, n, m), each expert's bits the same
    for any E and thread count."""
    if a.shape[0] != 1:
        return torch.bmm(a, b)
    return _one(None, a, b)


def baddbmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.baddbmm(c, a, b)``: c (E, 1 or n, m), a (E, n, k), b (E, k, m) -> (E, n, m),
    each expert's bits the same for any E and thread count."""
    if a.shape[0] != 1:
        return torch.baddbmm(c, a, b)
    return _one(c, a, b)


def row_sum(x: torch.Tensor, dim) -> torch.Tensor:
    """``x.sum(dim)`` for x (E, ...) with one expert (or interface side) per row and ``dim``
    not containing axis 0: each row's bits the same for any E and thread count."""
    if x.shape[0] != 1:
        return x.sum(dim)
    return _pair(x).sum(dim)[:1]


def row_mean(x: torch.Tensor, dim) -> torch.Tensor:
    """``x.mean(dim)``, like :func:`row_sum`."""
    if x.shape[0] != 1:
        return x.mean(dim)
    return _pair(x).mean(dim)[:1]

"""Batched products and sums give each expert the same bits whatever the number of experts in
the batch and the thread count (what makes 1, 2 and 4 ranks follow one trajectory)."""
from __future__ import annotations

import pytest
import torch

from ddpinn.nn.batched import baddbmm, bmm, row_mean, row_sum


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _layer(c, a, b, g):
    """Forward and first derivatives of sum(g * (c + a @ b)) for every batch item."""
    c, a, b = (t.clone().requires_grad_(True) for t in (c, a, b))
    out = baddbmm(c, a, b)
    (out * g).sum().backward()
    return out.detach(), c.grad, a.grad, b.grad


# (rows, inner, cols): hidden layers, one-output layers, the first layer of a 1D problem,
# a long contraction in the forward pass (L-BFGS inner products).
SHAPES = [(528, 16, 16), (528, 16, 1), (2640, 16, 16), (20000, 32, 1), (1000, 1, 16),
          (3, 4000, 5)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_each_expert_has_the_same_bits_for_any_batch_and_threads(restore_threads, dtype, shape):
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    c, a, b, g = (torch.randn(4, *s, generator=gen, dtype=dtype)
                  for s in ((1, n), (m, k), (k, n), (m, n)))
    torch.set_num_threads(1)
    ref = _layer(c, a, b, g)
    for threads in (1, 2, 4):
        torch.set_num_threads(threads)
        for e in (1, 2, 3, 4):
            got = _layer(c[:e], a[:e], b[:e], g[:e])
            for r, x in zip(ref, got):
                assert torch.equal(r[:e], x), (threads, e)
            assert torch.equal(bmm(a[:e], b[:e]), torch.bmm(a, b)[:e])


def test_double_backward_through_one_expert():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(1, 50, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 3, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(baddbmm, (c, a, b))
    torch.autograd.gradgradcheck(baddbmm, (c, a, b))
    torch.autograd.gradgradcheck(bmm, (a, b))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_row_sums_have_the_same_bits_for_any_batch_and_threads(restore_threads, dtype):
    x = torch.randn(4, 50000, 3, generator=torch.Generator().manual_seed(2), dtype=dtype)
    torch.set_num_threads(1)
    s, m = x.sum((-1, -2)), x[..., 0].mean(-1)
    for threads in (1, 2, 4):
        torch.set_num_threads(threads)
        for e in (1, 2, 4):
            assert torch.equal(row_sum(x[:e], (-1, -2)), s[:e]), (threads, e)
            assert torch.equal(row_mean(x[:e, :, 0], -1), m[:e]), (threads, e)

"""Batched experts (stacked weights, sid-keyed initialisation, periodic inputs) and the
derivative engine ``Fields`` (closed forms and finite differences)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpinn.decomposition import decompose
from ddpinn.geometry import Box
from ddpinn.nn import BatchedMLP, Fields
from ddpinn.nn.experts import ACTIVATIONS

BOX = Box((0.0, -1.0, 0.0), (2 * math.pi, 1.0, 1.0), ("x", "y", "t"))
DECOMP = decompose(BOX, [2, 2, 1])


def bounds(sids):
    return ([DECOMP.subdomains[s].box.lower for s in sids],
            [DECOMP.subdomains[s].box.upper for s in sids])


def make(sids, **kw):
    lower, upper = bounds(sids)
    kw.setdefault("width", 12)
    kw.setdefault("depth", 3)
    kw.setdefault("seed", 5)
    return BatchedMLP(sids, lower, upper, kw.pop("out_dim", 2), **kw)


def inputs(E, n=20, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor(BOX.lower, dtype=torch.float64)
    hi = torch.tensor(BOX.upper, dtype=torch.float64)
    x = lo + (hi - lo) * torch.rand(E, n, 3, dtype=torch.float64, generator=g)
    return x.requires_grad_(requires_grad)


PERIODS = [2 * math.pi, None, None]


# -- BatchedMLP ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {},
    {"activation": "sin", "fourier_features": 6, "fourier_scale": 2.0},
    {"periods": PERIODS, "harmonics": 3},
    {"periods": PERIODS, "fourier_features": 4, "activation": "gelu"},
])
def test_expert_independent_of_batch(kw):
    """An expert is the same whichever rank (batch) builds it."""
    full = make([0, 1, 2, 3], **kw)
    alone = make([2], **kw)
    x = inputs(4)
    out_full = full(x)
    out_alone = alone(x[2:3])
    torch.testing.assert_close(out_full[2], out_alone[0], rtol=0, atol=1e-12)
    for n, p in alone.named_parameters():
        torch.testing.assert_close(dict(full.named_parameters())[n][2], p[0], rtol=0, atol=0)
    # And the order of the batch does not matter either.
    reordered = make([3, 2, 1, 0], **kw)
    torch.testing.assert_close(reordered(x.flip(0)).flip(0), out_full, rtol=0, atol=1e-12)


def test_seed_and_sid_change_the_expert():
    a, b, c = make([0, 1], seed=5), make([0, 1], seed=6), make([1, 0], seed=5)
    x = inputs(2)
    assert not torch.allclose(a(x), b(x))
    w = a.weights[0].detach()
    assert not torch.allclose(w[0], w[1])                  # different sids differ
    torch.testing.assert_close(c.weights[0].detach()[1], w[0], rtol=0, atol=0)


def test_initialisation():
    m = make([0, 1, 2, 3], width=16, depth=2, out_dim=3)
    assert m.n_experts == 4
    assert [tuple(w.shape) for w in m.weights] == [(4, 3, 16), (4, 16, 16), (4, 16, 3)]
    assert [tuple(b.shape) for b in m.biases] == [(4, 1, 16), (4, 1, 16), (4, 1, 3)]
    for b in m.biases:
        assert torch.all(b == 0)
    for w in m.weights:
        assert w.dtype == torch.float64
    f32 = make([0, 1], dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in f32.parameters())
    assert f32(inputs(2).float()).dtype == torch.float32


def manual_forward(m: BatchedMLP, lower, upper, x):
    """Reference: a Python loop over experts with plain matmuls (no periodic features)."""
    outs = []
    for e in range(m.n_experts):
        lo = torch.as_tensor(np.asarray(lower[e], float))
        hi = torch.as_tensor(np.asarray(upper[e], float))
        h = 2 * (x[e] - lo) / (hi - lo) - 1
        for i, (w, b) in enumerate(zip(m.weights, m.biases)):
            h = h @ w[e] + b[e]
            if i < len(m.weights) - 1:
                h = torch.tanh(h)
        outs.append(h)
    return torch.stack(outs)


def test_batched_forward_equals_per_expert_loop():
    sids = [0, 1, 2, 3]
    m = make(sids, activation="tanh")
    with torch.no_grad():  # non-trivial biases, different per expert
        for b in m.biases:
            b.copy_(torch.randn(b.shape, dtype=b.dtype, generator=torch.Generator().manual_seed(1)))
    x = inputs(4, n=33)
    lower, upper = bounds(sids)
    torch.testing.assert_close(m(x), manual_forward(m, lower, upper, x), rtol=0, atol=1e-12)


def test_input_normalisation_maps_each_box_to_unit_cube():
    sids = [0, 3]
    m = make(sids)
    lower, upper = bounds(sids)
    x = torch.tensor([[lower[0], upper[0]], [lower[1], upper[1]]], dtype=torch.float64)
    z = m.encode(x)
    torch.testing.assert_close(z[:, 0], -torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(z[:, 1], torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("kw", [{}, {"fourier_features": 4}, {"harmonics": 1}])
def test_periodic_axis_is_exactly_periodic(kw):
    m = make([0, 1, 2, 3], periods=PERIODS, **kw)
    x = inputs(4)
    shifted = x.clone()
    shifted[..., 0] += 2 * math.pi
    torch.testing.assert_close(m(shifted), m(x), rtol=0, atol=1e-12)
    back = x.clone()
    back[..., 0] -= 3 * 2 * math.pi
    torch.testing.assert_close(m(back), m(x), rtol=0, atol=1e-11)
    # A non-periodic axis is not periodic.
    other = x.clone()
    other[..., 1] += 2.0
    assert not torch.allclose(m(other), m(x))


def test_two_periodic_axes():
    periods = [2 * math.pi, 2.0, None]
    m = make([0, 1, 2, 3], periods=periods)
    x = inputs(4)
    s = x.clone()
    s[..., 0] -= 2 * math.pi
    s[..., 1] += 2.0
    torch.testing.assert_close(m(s), m(x), rtol=0, atol=1e-12)


def test_expert_state_round_trip():
    src = make([0, 1, 2, 3], fourier_features=3)
    states = src.expert_state()
    assert sorted(states) == [0, 1, 2, 3]
    for n, p in src.named_parameters():
        for e, s in enumerate(src.sids):
            assert torch.equal(states[s][n], p[e].detach())
    # Load into experts built from another seed, in another order and subset.
    dst = make([3, 1], seed=99, fourier_features=3)
    # The random Fourier projection is a buffer drawn from (seed, sid), not a parameter:
    # a restart uses the case's seed, so take the same one here.
    dst.fourier_b.copy_(make([3, 1], fourier_features=3).fourier_b)
    dst.load_expert_state(states)
    for n, p in dst.named_parameters():
        assert torch.equal(p[0], states[3][n]) and torch.equal(p[1], states[1][n])
    # The state is a copy: training the source does not change it.
    with torch.no_grad():
        src.weights[0].add_(1.0)
    assert not torch.equal(states[0]["weights.0"], src.weights[0][0])
    x = inputs(4)
    torch.testing.assert_close(dst(x[[3, 1]]), make([0, 1, 2, 3], fourier_features=3)(x)[[3, 1]],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activations_build(activation):
    m = make([0], activation=activation)
    assert torch.isfinite(m(inputs(1))).all()


# -- Fields: closed forms -------------------------------------------------------------------------
def closed_form_fields():
    x = inputs(2, n=25, seed=3, requires_grad=True)
    X, Y, T = x[..., 0], x[..., 1], x[..., 2]
    u = torch.stack([torch.sin(X) * Y ** 2 * T, torch.exp(X) * Y + T ** 3], dim=-1)
    return x, Fields(x, u, ("x", "y", "t"), ("u", "v"))


def test_fields_closed_forms():
    x, f = closed_form_fields()
    X, Y, T = (x[..., i].detach() for i in range(3))
    s, c, ex = torch.sin(X), torch.cos(X), torch.exp(X)

    def close(a, b):
        torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-12)

    close(f.value("u"), s * Y ** 2 * T)
    close(f.value(1), ex * Y + T ** 3)
    close(f.d("u", "x"), c * Y ** 2 * T)
    close(f.d(0, 1), 2 * s * Y * T)
    close(f.d("u", "t"), s * Y ** 2)
    close(f.grad("v"), torch.stack([ex * Y, ex, 3 * T ** 2], dim=-1))
    close(f.d2("u", "x", "x"), -s * Y ** 2 * T)
    close(f.d2("u", "x", "y"), 2 * c * Y * T)
    close(f.d2("u", "y", "x"), 2 * c * Y * T)
    close(f.d2("u", "y", "y"), 2 * s * T)
    close(f.d2("u", "t", "t"), torch.zeros_like(X))
    close(f.d2("v", "t", "t"), 6 * T)
    close(f.hess_row("v", "x"), torch.stack([ex * Y, ex, torch.zeros_like(X)], dim=-1))
    # Laplacian over the space axes by default (t excluded), or over the axes given.
    close(f.laplacian("u"), -s * Y ** 2 * T + 2 * s * T)
    close(f.laplacian("v"), ex * Y)
    close(f.laplacian("v", ["x", "y", "t"]), ex * Y + 6 * T)
    close(f.laplacian(0, ["y"]), 2 * s * T)
    # Gradient of any per-point quantity.
    w = f.value("u") * x[..., 0]
    close(f.grad_of(w), torch.stack([(c * X + s) * Y ** 2 * T, 2 * s * Y * T * X,
                                     s * Y ** 2 * X], dim=-1))


def test_fields_caches_and_keeps_graph():
    x, f = closed_form_fields()
    assert f.grad("u") is f.grad(0)
    assert f.hess_row("u", "x") is f.hess_row(0, 0)
    # create_graph=True: derivatives are differentiable (third derivative).
    g = f.grad_of(f.d2("u", "x", "x"))  # d/dx(-sin x y^2 t) = -cos x y^2 t
    X, Y, T = (x[..., i].detach() for i in range(3))
    torch.testing.assert_close(g[..., 0].detach(), -torch.cos(X) * Y ** 2 * T, rtol=1e-12,
                               atol=1e-12)


def test_fields_independent_output_gives_zero_gradient():
    x = inputs(1, n=5, requires_grad=True)
    u = torch.stack([torch.sin(x[..., 0]), torch.ones_like(x[..., 0]) * 2.0 + 0 * x[..., 1]],
                    dim=-1)
    f = Fields(x, u, ("x", "y", "t"), ("a", "b"))
    assert torch.all(f.d("b", "x") == 0)
    assert torch.all(f.d("a", "t") == 0)


def test_fields_laplacian_closed_form():
    x, f = closed_form_fields()
    X, Y, T = (x[..., i].detach() for i in range(3))
    torch.testing.assert_close(f.laplacian("u"), -torch.sin(X) * Y ** 2 * T
                               + 2 * torch.sin(X) * T, rtol=1e-12, atol=1e-12)


def test_fields_several_outputs():
    x, f = closed_form_fields()
    X, Y, T = (x[..., i].detach() for i in range(3))
    torch.testing.assert_close(f.d("u", "x"), torch.cos(X) * Y ** 2 * T)
    torch.testing.assert_close(f.d("v", "y"), torch.exp(X))


def test_fields_second_derivative_of_linear_output_is_zero():
    x = inputs(1, n=5, requires_grad=True)
    u = (2 * x[..., 0] + x[..., 1])[..., None]
    f = Fields(x, u, ("x", "y", "t"), ("u",))
    assert torch.all(f.d2("u", "x", "x") == 0)


# -- Fields: finite differences of the network output ---------------------------------------------
def test_fields_match_finite_differences_of_network():
    m = make([0, 1, 2, 3], periods=PERIODS, fourier_features=3, activation="tanh")
    x = inputs(4, n=6, seed=9, requires_grad=True)
    f = Fields(x, m(x), ("x", "y", "t"), ("u", "v"))
    h = 1e-5
    for a in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[a] = h
        with torch.no_grad():
            fd = (m(x + step) - m(x - step)) / (2 * h)  # (E, N, m)
        for k in range(2):
            torch.testing.assert_close(f.d(k, a).detach(), fd[..., k], rtol=0, atol=1e-6)
    # Second derivatives: central differences of the autograd gradient.
    for a in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[a] = h
        xp = (x.detach() + step).requires_grad_(True)
        xm = (x.detach() - step).requires_grad_(True)
        fp = Fields(xp, m(xp), ("x", "y", "t"), ("u", "v"))
        fm = Fields(xm, m(xm), ("x", "y", "t"), ("u", "v"))
        for k in range(2):
            fd = (fp.grad(k) - fm.grad(k)) / (2 * h)  # row a of the Hessian
            torch.testing.assert_close(f.hess_row(k, a).detach(), fd, rtol=0, atol=1e-6)
            for b in range(3):
                torch.testing.assert_close(f.d2(k, a, b).detach(), fd[..., b], rtol=0,
                                           atol=1e-6)
    # And a plain second difference of the output for the Laplacian (looser: h^2 round-off).
    h2 = 1e-3
    with torch.no_grad():
        lap = torch.zeros_like(x[..., 0])
        for a in range(2):
            step = torch.zeros(3, dtype=torch.float64)
            step[a] = h2
            lap = lap + (m(x + step) - 2 * m(x) + m(x - step))[..., 0] / h2 ** 2
    torch.testing.assert_close(f.laplacian(0).detach(), lap, rtol=0, atol=1e-4)


def test_fields_derivatives_are_per_expert():
    """Experts and points are independent: perturbing one expert's weights changes only that
    expert's derivatives."""
    m = make([0, 1, 2, 3])
    x = inputs(4, n=7, requires_grad=True)
    g0 = Fields(x, m(x), ("x", "y", "t"), ("u", "v")).grad(0).detach()
    with torch.no_grad():
        m.weights[0][2].mul_(1.5)
    g1 = Fields(x, m(x), ("x", "y", "t"), ("u", "v")).grad(0).detach()
    assert torch.equal(g0[[0, 1, 3]], g1[[0, 1, 3]])
    assert not torch.allclose(g0[2], g1[2])



"""Periodic wavevectors of the MLP encoding (``network.periodic_modes``): which wavevectors
each choice takes, exact periodicity, the Taylor engine against autograd on mixed modes, and
the point of mixed modes (a product of the axes' harmonics is one feature), and the
equal-parity lattice that the Taylor-Green flow stays on."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpinn.io.config import ConfigError, from_dict
from ddpinn.nn import BatchedMLP, Fields, TaylorFields
from ddpinn.nn.encoding import (PERIODIC_MODES, axis_wavevectors, equal_parity_wavevectors,
                                mixed_wavevectors)
from ddpinn.pdes import PDES
from ddpinn.references.spectral import taylor_green_reference

PI = math.pi


def test_axis_wavevectors_are_each_axis_alone_axis_major():
    k = axis_wavevectors(3, 2)
    assert k.tolist() == [[1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 2, 0], [0, 0, 1], [0, 0, 2]]


@pytest.mark.parametrize("n_axes,harmonics", [(1, 3), (2, 2), (3, 1), (3, 2)])
def test_mixed_wavevectors_take_one_of_each_pair(n_axes, harmonics):
    k = mixed_wavevectors(n_axes, harmonics)
    assert k.shape == (((2 * harmonics + 1) ** n_axes - 1) // 2, n_axes)
    assert np.abs(k).max() == harmonics and (np.abs(k).max(axis=1) > 0).all()
    seen = {tuple(v) for v in k}
    assert len(seen) == len(k)
    assert not any(tuple(-v) in seen for v in k)  # k and -k: one cos/sin pair
    if n_axes == 1:
        assert k[:, 0].tolist() == list(range(1, harmonics + 1))  # the same as "axes"


@pytest.mark.parametrize("n_axes,harmonics", [(1, 3), (2, 2), (3, 1), (3, 2), (3, 4)])
def test_equal_parity_wavevectors_are_the_mixed_ones_on_a_lattice_closed_under_sums(
        n_axes, harmonics):
    mixed = mixed_wavevectors(n_axes, harmonics)
    k = equal_parity_wavevectors(n_axes, harmonics)
    odd, even = 2 * ((harmonics + 1) // 2), 2 * (harmonics // 2) + 1  # values per entry
    assert len(k) == (odd ** n_axes + even ** n_axes - 1) // 2
    kept = {tuple(v) for v in k}
    assert [tuple(v) for v in mixed if tuple(v) in kept] == [tuple(v) for v in k]  # order
    assert all(len({c % 2 for c in v}) == 1 for v in kept)
    for a in k:  # a sum (or difference) within the bound is a feature again, up to sign
        for b in k:
            for c in (a + b, a - b):
                if c.any() and np.abs(c).max() <= harmonics:
                    assert tuple(c) in kept or tuple(-c) in kept
    if n_axes == 1:
        np.testing.assert_array_equal(k, mixed)


def test_taylor_green_flow_stays_on_the_equal_parity_lattice():
    """The spectral Taylor-Green solution (k = (+-1, +-1, +-1) at t = 0) has no energy in a
    mode of mixed parity at a later time, and modes of equal parity carry it."""
    n = 16
    ref = taylor_green_reference(n, 0.01, [0.0, 1.0])
    k = np.fft.fftfreq(n, 1 / n).astype(int)
    kx, ky, kz = np.meshgrid(k, k, k, indexing="ij")
    equal = ((kx - ky) % 2 == 0) & ((ky - kz) % 2 == 0)
    energy = (np.abs(np.fft.fftn(ref.velocity[1], axes=(1, 2, 3))) ** 2).sum(0)
    higher = equal & (np.maximum(np.maximum(abs(kx), abs(ky)), abs(kz)) >= 2)
    assert energy[~equal].sum() < 1e-20 * energy.sum()
    assert energy[higher].sum() > 1e-4 * energy.sum()  # the flow left its initial modes


def model(modes, periods, dim=4, out=4, fourier=0, seed=3):
    lower = [[-PI, -PI, -PI, 0.0], [-PI, -PI, -PI, 1.0]]
    upper = [[PI, PI, PI, 1.0], [PI, PI, PI, 2.0]]
    m = BatchedMLP([0, 1], lower, upper, out, width=7, depth=2, activation="tanh",
                   periods=periods, harmonics=2, fourier_features=fourier, seed=seed,
                   dtype=torch.float64, periodic_modes=modes)
    with torch.no_grad():  # non-zero biases: every term of the chain rule
        for b in m.biases:
            b.copy_(0.3 * torch.randn(b.shape, dtype=b.dtype,
                                      generator=torch.Generator().manual_seed(seed)))
    return m


def points(n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, n, 4, generator=g, dtype=torch.float64)
    x[..., :3] = (2 * x[..., :3] - 1) * PI
    x[1, :, 3] += 1.0
    return x


@pytest.mark.parametrize("modes, n_modes", [("mixed", 62), ("equal_parity", 17)])
def test_mixed_modes_are_exactly_periodic_and_sized_by_the_layout(modes, n_modes):
    m = model(modes, [2 * PI, 2 * PI, 2 * PI, None])
    assert m.periodic_wavevectors.shape == (3, n_modes) and m.layout.n_modes == n_modes
    assert m.encode(points()).shape[-1] == m.layout.width == 1 + 2 * n_modes
    x = points()
    for a in range(3):
        shifted = x.clone()
        shifted[..., a] += 2 * PI
        assert torch.allclose(m(shifted), m(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fourier", [0, 3])
@pytest.mark.parametrize("periods", [[2 * PI, 2 * PI, 2 * PI, None], [2 * PI, None, PI, None]],
                         ids=["xyz", "xz"])
def test_taylor_engine_matches_autograd_on_mixed_modes(periods, fourier):
    """Every first and second derivative (mixed pairs included: with mixed wavevectors the
    encoding's cross terms d2/dx dy are not zero), the Laplacian and the Navier-Stokes
    residual, and the parameter gradient of a loss built from them."""
    pde = PDES["taylor_green"](3)
    m = model("mixed", periods, fourier=fourier)
    xa = points().requires_grad_(True)
    xt = points().requires_grad_(True)
    fa = Fields(xa, m(xa), pde.axes, pde.outputs)
    ft = TaylorFields(m, xt, pde.axes, pde.outputs)
    assert torch.equal(ft.u, m(xt))
    terms = []
    for k in range(4):
        pairs = [(ft.laplacian(k), fa.laplacian(k)), (ft.grad(k), fa.grad(k))]
        pairs += [(ft.d2(k, a, b), fa.d2(k, a, b)) for a in range(4) for b in range(a, 4)]
        for got, ref in pairs:
            assert torch.allclose(got, ref, rtol=1e-10, atol=1e-10)
            terms.append((got, ref))
    got, ref = pde.residual(ft, pde.params), pde.residual(fa, pde.params)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-10)
    loss_t = sum(g.pow(2).sum() for g, _ in terms) + got.pow(2).sum()
    loss_a = sum(r.pow(2).sum() for _, r in terms) + ref.pow(2).sum()
    for gt, ga in zip(torch.autograd.grad(loss_t, list(m.parameters())),
                      torch.autograd.grad(loss_a, list(m.parameters()))):
        assert torch.allclose(gt, ga, rtol=1e-9, atol=1e-10)


def test_a_product_of_harmonics_is_one_mixed_feature_and_not_an_axes_one():
    """sin x cos y cos z (the Taylor-Green field) is a combination of four mixed features;
    the per-axis features cannot express it linearly."""
    x = points(n=200, seed=1)
    target = torch.sin(x[0, :, 0]) * torch.cos(x[0, :, 1]) * torch.cos(x[0, :, 2])
    residual = {}
    for modes in PERIODIC_MODES:
        m = model(modes, [2 * PI, 2 * PI, 2 * PI, None])
        feats = m.encode(x)[0]
        coef = torch.linalg.lstsq(feats, target[:, None]).solution
        residual[modes] = float((feats @ coef)[:, 0].sub(target).norm() / target.norm())
    assert residual["mixed"] < 1e-12 and residual["equal_parity"] < 1e-12
    assert residual["axes"] > 0.5


def test_config_names_the_allowed_periodic_modes():
    base = {"domain": {"lower": [0.0], "upper": [1.0], "periodic": ["x"]},
            "pde": {"name": "poisson"}, "decomposition": {"grid": [2]}}
    assert from_dict({**base, "network": {"periodic_modes": "mixed"}}).network.periodic_modes \
        == "mixed"
    with pytest.raises(ConfigError, match="periodic_modes.*axes.*mixed"):
        from_dict({**base, "network": {"periodic_modes": "all"}})

"""The Taylor-mode derivative engine agrees with the autograd reference (float64, 1e-10).

For every registered PDE (every allowed space dimension, time-dependent ones too) and small
random experts (4 activations; plain inputs, or periodic features plus random Fourier
features): the outputs, every first and second derivative, the Laplacian, the flux, the
residual, every interface quantity on a real decomposition, and the parameter gradient of a
scalar loss built from all of them; gradients and Hessians also against ``torch.func`` (not
through :class:`Fields`). Also: engine selection and fallback, caching, config validation,
and the training loss trajectories of both engines.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ddpinn.decomposition import decompose, partition
from ddpinn.geometry import Box
from ddpinn.interface import exchange
from ddpinn.interface.conditions import QUANTITIES
from ddpinn.io.config import ConfigError, PointsSection, from_dict, load
from ddpinn.nn import BatchedMLP, Fields, TaylorFields, make_fields
from ddpinn.parallel import SerialComm
from ddpinn.pdes import PDES
from ddpinn.problem import build_problem
from ddpinn.training.points import build_points
from ddpinn.training.solver import Solver

ACTS = ("tanh", "sin", "gelu", "silu")
PDE_DIMS = [(name, dim) for name in sorted(PDES) for dim in PDES[name].space_dims]
PTS = PointsSection(interior=6, boundary=2, interface=4, data=0)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and immune to a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def close(got, ref, what, tol=1e-10):
    """|got - ref| <= tol * max(1, |ref|_max): relative where magnitudes are large."""
    got, ref = got.detach(), ref.detach()
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    err = float((got - ref).abs().max()) if ref.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3e} (scale {scale:.3e})"


def setup(name, dim, activation, encoded, seed=5):
    """A real small decomposition (2 subdomains along x; periodic: 2 interfaces), its
    points, experts and interface plan."""
    pde = PDES[name](dim)
    lo, hi, time = pde.domain or ([0.0], [1.0], None)
    lower = [lo[min(i, len(lo) - 1)] for i in range(dim)]
    upper = [hi[min(i, len(hi) - 1)] for i in range(dim)]
    names = ("x", "y", "z")[:dim]
    time_axis = None
    if pde.time_dependent:
        lower, upper, names = lower + [(time or [0, 1])[0]], upper + [(time or [0, 1])[1]], \
            names + ("t",)
        time_axis = dim
    box = Box(tuple(lower), tuple(upper), names)
    # A periodic-box PDE has no data on space faces: all its space axes are periodic.
    periodic = [(encoded and a == 0) or (getattr(pde, "periodic_space", False) and a < dim)
                for a in range(len(names))]
    grid = [2] + [1] * (len(names) - 1)
    decomp = decompose(box, grid, periodic, time_axis)
    sids = list(range(decomp.n_subdomains))
    batch = build_points(decomp, sids, pde, PTS, seed, pde.params, time_axis)
    plan = exchange.InterfacePlan(batch.sides, sids, partition(decomp.grid, 1), 0,
                                  batch.n_interface, batch.x.shape[1])
    boxes = [decomp.subdomains[s].box for s in sids]
    periods = [box.width[a] if periodic[a] else None for a in range(len(names))]
    model = BatchedMLP(sids, [b.lower for b in boxes], [b.upper for b in boxes], pde.n_out,
                       width=6, depth=2, activation=activation, periods=periods,
                       fourier_features=3 if encoded else 0, fourier_scale=1.5, seed=seed,
                       dtype=torch.float64)
    with torch.no_grad():  # non-zero biases: exercise every term of the chain rule
        for b in model.biases:
            b.copy_(0.3 * torch.randn(b.shape, dtype=b.dtype,
                                      generator=torch.Generator().manual_seed(seed)))
    return pde, batch, plan, model


def everything(f, pde, plan):
    """Every quantity the PDEs and interfaces use, in a dict; also a scalar loss."""
    out = {"u": f.u}
    d, m = f.x.shape[-1], pde.n_out
    res = out["res"] = pde.residual(f, pde.params)
    mine = exchange.interface_values(plan, f, res, pde, pde.params, QUANTITIES)
    out.update({f"if_{q}": v for q, v in mine.items()})
    out["flux"] = pde.flux(f, pde.params)
    for k in range(m):
        out[f"grad{k}"] = f.grad(k)
        out[f"lap{k}"] = f.laplacian(k)
        out[f"lap_all{k}"] = f.laplacian(k, list(range(d)))
        for a in range(d):
            out[f"d{k}{a}"] = f.d(k, a)
            out[f"row{k}{a}"] = f.hess_row(k, a)
            for b in range(d):
                out[f"d2{k}{a}{b}"] = f.d2(k, a, b)
    loss = sum((v.pow(2).mean() for v in out.values()), torch.zeros((), dtype=f.x.dtype))
    return out, loss


def fields_pair(model, batch, pde):
    xa = batch.x.detach().clone().requires_grad_(True)
    xt = batch.x.detach().clone().requires_grad_(True)
    return (Fields(xa, model(xa), pde.axes, pde.outputs),
            TaylorFields(model, xt, pde.axes, pde.outputs))


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "periodic+fourier"])
@pytest.mark.parametrize("name,dim", PDE_DIMS, ids=[f"{n}{d}d" for n, d in PDE_DIMS])
def test_taylor_matches_autograd(name, dim, encoded):
    for activation in ACTS:
        pde, batch, plan, model = setup(name, dim, activation, encoded)
        assert plan.n_sides >= 2
        fa, ft = fields_pair(model, batch, pde)
        assert torch.equal(ft.u, model(ft.x))  # same ops as the forward pass: same bits
        ref, loss_a = everything(fa, pde, plan)
        got, loss_t = everything(ft, pde, plan)
        assert set(got) == set(ref)
        for key in ref:
            close(got[key], ref[key], f"{name} {dim}D {activation} {key}")
        params = list(model.parameters())
        ga = torch.autograd.grad(loss_a, params)
        gt = torch.autograd.grad(loss_t, params)
        for i, (a, t) in enumerate(zip(ga, gt)):
            close(t, a, f"{name} {dim}D {activation} d loss / d param {i}")


@pytest.mark.parametrize("activation", ACTS)
def test_taylor_lazy_order_does_not_matter(activation):
    """Second derivatives first (no Jacobian asked yet), channels one by one or all at once,
    Laplacian before or after its diagonal entries: the same numbers."""
    pde, batch, plan, model = setup("beltrami", 3, activation, True)
    fa, _ = fields_pair(model, batch, pde)
    x = batch.x.detach().clone().requires_grad_(True)
    f1 = TaylorFields(model, x, pde.axes, pde.outputs)
    lap_first = f1.laplacian(0)          # forward-Laplacian channel before anything else
    d2_then = f1.d2(1, "x", "t")         # one mixed entry
    row = f1.hess_row(2, "z")            # a row: several channels in one sweep
    f2 = TaylorFields(model, x, pde.axes, pde.outputs)
    diag = [f2.d2(0, a, a) for a in "xyz"]
    lap_after = f2.laplacian(0)          # sums the known diagonal entries
    close(lap_first, fa.laplacian(0), "laplacian (channel)")
    close(lap_after, fa.laplacian(0), "laplacian (sum)")
    close(sum(diag), fa.laplacian(0), "diagonal")
    close(d2_then, fa.d2(1, "x", "t"), "mixed")
    close(f2.d2(1, "t", "x"), fa.d2(1, "x", "t"), "mixed, swapped")
    close(row, fa.hess_row(2, "z"), "row")
    close(f1.grad(3), fa.grad(3), "gradient after second derivatives")


def test_taylor_caches_and_keeps_graph():
    pde, batch, plan, model = setup("heat", 2, "tanh", False)
    x = batch.x.detach().clone().requires_grad_(True)
    f = TaylorFields(model, x, pde.axes, pde.outputs)
    assert f.u is f.u
    assert f.d2(0, "x", "y") is f.d2(0, "y", "x") or torch.equal(f.d2(0, "x", "y"),
                                                                 f.d2(0, "y", "x"))
    assert f.hess_row("u", "x") is f.hess_row(0, 0)
    lap = f.laplacian(0)
    assert f.laplacian(0) is lap  # one Laplacian channel, computed once and kept
    # Derivatives are differentiable in x (third derivatives through grad_of).
    fa = Fields(x, model(x), pde.axes, pde.outputs)
    close(f.grad_of(f.d2(0, "x", "x")), fa.grad_of(fa.d2(0, "x", "x")), "third derivative")
    # Without x.requires_grad the forward quantities still work; grad_of says why it cannot.
    g = TaylorFields(model, batch.x.detach(), pde.axes, pde.outputs)
    close(g.laplacian(0), fa.laplacian(0), "laplacian without x.requires_grad")
    with pytest.raises(RuntimeError, match="requires_grad"):
        g.grad_of(g.value(0))


def test_taylor_float32():
    """u is bit-identical to model(x) in float32 too; derivatives agree to float32 round-off."""
    pde, batch, plan, model = setup("kovasznay", 2, "silu", True)
    model = model.float()
    x = batch.x.float().requires_grad_(True)
    fa = Fields(x, model(x), pde.axes, pde.outputs)
    ft = TaylorFields(model, x, pde.axes, pde.outputs)
    assert torch.equal(ft.u, model(x))
    close(ft.laplacian(0), fa.laplacian(0), "laplacian", tol=1e-4)
    close(pde.residual(ft, pde.params), pde.residual(fa, pde.params), "residual", tol=1e-4)


class _Doubled(BatchedMLP):
    def forward(self, x):
        return 2 * super().forward(x)


class _Other(nn.Module):
    activation = None

    def forward(self, x):
        return torch.sin(x).sum(-1, keepdim=True)


def test_make_fields_engines_and_fallback():
    pde, batch, plan, model = setup("poisson", 2, "tanh", False)
    x = batch.x.detach().clone().requires_grad_(True)
    assert isinstance(make_fields(model, x, pde.axes, pde.outputs, "taylor"), TaylorFields)
    assert type(make_fields(model, x, pde.axes, pde.outputs, "autograd")) is Fields
    with pytest.raises(ValueError, match="derivative engine"):
        make_fields(model, x, pde.axes, pde.outputs, "reverse")
    # Architectures the Taylor engine does not know fall back to autograd, correctly.
    doubled = _Doubled(model.sids, [[0, 0], [0.5, 0]], [[0.5, 1], [1, 1]], 1, width=6, depth=2)
    f = make_fields(doubled, x, pde.axes, pde.outputs, "taylor")
    assert type(f) is Fields
    torch.testing.assert_close(f.u, doubled(x))
    g = make_fields(_Other(), x, pde.axes, pde.outputs, "taylor")
    assert type(g) is Fields
    close(g.laplacian(0), -torch.sin(x).sum(-1), "fallback laplacian")
    model.activation = torch.nn.functional.softplus  # not in the derivative table
    assert type(make_fields(model, x, pde.axes, pde.outputs, "taylor")) is Fields
    with pytest.raises(TypeError, match="BatchedMLP"):
        TaylorFields(_Other(), x, pde.axes, pde.outputs)


def test_config_derivatives_field():
    base = {"domain": {"lower": [0.0], "upper": [1.0]}, "decomposition": {"grid": [1]},
            "pde": {"name": "poisson"}}
    assert from_dict(base).network.derivatives == "taylor"
    assert from_dict({**base, "network": {"derivatives": "autograd"}}).network.derivatives \
        == "autograd"
    with pytest.raises(ConfigError, match=r"'network.derivatives' = 'forward'.*taylor, autograd"):
        from_dict({**base, "network": {"derivatives": "forward"}})


# -- training: the Taylor engine against the autograd reference -----------------------------------
def _solver(case, engine, extra=()):
    cfg = load(case, ["case.dtype=float64", "case.seed=3", "network.width=8",
                      "network.depth=2", "points.interior=40", "points.boundary=6",
                      "points.interface=6", "decomposition.grid=[2, 2]",
                      f"network.derivatives={engine}", *extra])
    return Solver(build_problem(cfg), SerialComm())


def _trajectory(solver, steps=4):
    opt = torch.optim.Adam(solver.parameters(), lr=1e-2)
    out = []
    for _ in range(steps):
        loss, _ = solver.closure()
        out.append(loss)
        opt.step()
    return out


CONDS = "interface.conditions=['average_solution', 'residual_continuity', " \
        "'normal_derivative_continuity', 'flux_continuity', " \
        "'second_normal_derivative_continuity', 'residual_gradient']"


def test_training_losses_of_both_engines(poisson_toml):
    """Adam steps with every kind of interface quantity: the Taylor engine's losses are the
    nested-autograd reference's to 1e-10."""
    auto = _trajectory(_solver(poisson_toml, "autograd", [CONDS]))
    taylor = _trajectory(_solver(poisson_toml, "taylor", [CONDS]))
    assert len(set(auto)) == len(auto)  # the steps change the loss: a trajectory, not a point
    for a, t in zip(auto, taylor):
        assert abs(a - t) <= 1e-10 * abs(a), (auto, taylor)


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_taylor_matches_an_independent_hessian(activation):
    """Gradients and Hessians from ``torch.func`` (the whole Hessian of the sum over points,
    whose diagonal blocks are each point's own): an independent reference for the Taylor
    engine that does not go through :class:`Fields`."""
    pde, batch, plan, model = setup("beltrami", 3, activation, True)
    x = batch.x.detach()[:, :6].clone()
    E, N, d = x.shape
    f = TaylorFields(model, x, pde.axes, pde.outputs)
    point = torch.arange(E * N)
    for k in range(pde.n_out):
        def total(y, k=k):
            return model(y)[..., k].sum()

        grad = torch.func.grad(total)(x)
        hess = torch.func.hessian(total)(x).reshape(E * N, d, E * N, d)[point, :, point, :]
        hess = hess.reshape(E, N, d, d)
        close(f.grad(k), grad, f"{activation} output {k}: gradient")
        for a in range(d):
            close(f.hess_row(k, a), hess[:, :, a], f"{activation} output {k}: Hessian row {a}")
        close(f.laplacian(k), hess[..., [0, 1, 2], [0, 1, 2]].sum(-1),
              f"{activation} output {k}: Laplacian")

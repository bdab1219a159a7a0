"""Hard initial conditions (``network.hard_initial``): u = g + (t - t0) / tau N on the first
time slab.

For every time-dependent PDE on a decomposition with two time slabs: the constrained outputs
meet the initial data (read at t0) exactly at t0 on first-slab experts, later slabs and
outputs without data are the networks themselves, and the Taylor-mode engine's derivatives of
the product (and the parameter gradient of a loss built from all of them) agree with autograd
through the constrained forward pass to 1e-10 in float64. Also: the solver builds the
constraint from the case, the initial-condition term of the loss vanishes, and a case without
time is refused.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpinn.decomposition import decompose, partition
from ddpinn.geometry import Box
from ddpinn.interface import exchange
from ddpinn.io.config import ConfigError, PointsSection, from_dict, load
from ddpinn.nn import BatchedMLP, Fields, TaylorFields, make_fields
from ddpinn.nn.constraints import ConstrainedFields, initial_constraint
from ddpinn.parallel import SerialComm
from ddpinn.pdes import PDES
from ddpinn.problem import build_problem
from ddpinn.training.points import build_points
from ddpinn.training.solver import Solver

from test_taylor import close, everything, one_thread  # noqa: F401  (autouse fixture)

CASES = Path(__file__).resolve().parents[2] / "cases"
# (families without data of their own, which [[boundary]] tables give, have none to impose)
TIME_PDES = [(n, d) for n in sorted(PDES) for d in PDES[n].space_dims
             if PDES[n].time_dependent and not getattr(PDES[n], "needs_boundary_tables", False)]
PTS = PointsSection(interior=6, boundary=3, interface=4, data=0)


def two_slabs(name, dim, seed=7):
    """Experts of a 1 x ... x 2 (time) decomposition with the constraint set."""
    pde = PDES[name](dim)
    lo, hi, time = pde.domain or ([0.0], [1.0], None)
    lower = [lo[min(i, len(lo) - 1)] for i in range(dim)] + [(time or [0, 1])[0]]
    upper = [hi[min(i, len(hi) - 1)] for i in range(dim)] + [(time or [0, 1])[1]]
    names = ("x", "y", "z")[:dim] + ("t",)
    box = Box(tuple(lower), tuple(upper), names)
    periodic = [getattr(pde, "periodic_space", False) and a < dim for a in range(dim + 1)]
    decomp = decompose(box, [1] * dim + [2], periodic, dim)
    sids = list(range(decomp.n_subdomains))
    batch = build_points(decomp, sids, pde, PTS, seed, pde.params, dim)
    plan = exchange.InterfacePlan(batch.sides, sids, partition(decomp.grid, 1), 0,
                                  batch.n_interface, batch.x.shape[1])
    boxes = [decomp.subdomains[s].box for s in sids]
    periods = [box.width[a] if periodic[a] else None for a in range(dim + 1)]
    model = BatchedMLP(sids, [b.lower for b in boxes], [b.upper for b in boxes], pde.n_out,
                       width=6, depth=2, periods=periods, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        for b in model.biases:
            b.copy_(0.3 * torch.randn(b.shape, dtype=b.dtype,
                                      generator=torch.Generator().manual_seed(seed)))
    model.output_transform = initial_constraint(pde, pde.params, boxes, dim, lower[-1],
                                                torch.float64, None)
    return pde, batch, plan, model, boxes


@pytest.mark.parametrize("name,dim", TIME_PDES, ids=[f"{n}{d}d" for n, d in TIME_PDES])
def test_exact_initial_data_and_identity_elsewhere(name, dim):
    pde, batch, _, model, boxes = two_slabs(name, dim)
    first = [abs(b.lower[dim] - boxes[0].lower[dim]) < 1e-12 for b in boxes]
    assert first == [True, False]
    x = batch.x.detach().clone()
    x[0, :, dim] = boxes[0].lower[dim]  # the first slab at t0
    target, mask = pde.boundary_data(x, dim, 0, pde.params)
    out, net = model(x), model.network(x)
    cols = torch.tensor(mask)
    close(out[0][:, cols], target[0][:, cols], f"{name}: u(x, t0) = g", tol=1e-14)
    assert float((net[0][:, cols] - target[0][:, cols]).detach().abs().max()) > 1e-3  # not by luck
    at_t0 = x.clone()
    at_t0[..., dim] = boxes[0].lower[dim]
    g = pde.boundary_data(at_t0, dim, 0, pde.params)[0]
    mid = x.clone()
    mid[0, :, dim] = boxes[0].lower[dim] + 0.25 * (boxes[0].upper[dim] - boxes[0].lower[dim])
    # The first slab inside: g(x, t0) + (t - t0) / tau N, never the data at the point's time.
    close(model(mid)[0][:, cols], g[0][:, cols] + 0.25 * model.network(mid)[0][:, cols],
          f"{name}: first slab g(t0) + (t - t0) / tau N", tol=1e-14)
    assert torch.equal(out[1], net[1])  # the later slab is the network
    assert torch.equal(out[:, :, ~cols], net[:, :, ~cols])  # outputs without data: N


@pytest.mark.parametrize("name,dim", TIME_PDES, ids=[f"{n}{d}d" for n, d in TIME_PDES])
def test_taylor_derivatives_of_the_constraint_match_autograd(name, dim):
    pde, batch, plan, model, _ = two_slabs(name, dim)
    xa = batch.x.detach().clone().requires_grad_(True)
    xt = batch.x.detach().clone().requires_grad_(True)
    fa = Fields(xa, model(xa), pde.axes, pde.outputs)
    ft = make_fields(model, xt, pde.axes, pde.outputs, "taylor")
    assert isinstance(ft, ConstrainedFields) and isinstance(ft.inner, TaylorFields)
    ref, loss_a = everything(fa, pde, plan)
    got, loss_t = everything(ft, pde, plan)
    for key in ref:
        close(got[key], ref[key], f"{name} {dim}D {key}")
    close(ft.grad_of(ft.d(0, "t")), fa.grad_of(fa.d(0, "t")), "third derivatives")
    params = list(model.parameters())
    for i, (a, t) in enumerate(zip(torch.autograd.grad(loss_a, params),
                                   torch.autograd.grad(loss_t, params))):
        close(t, a, f"{name} {dim}D d loss / d param {i}")


def test_solver_builds_the_constraint_and_the_initial_term_vanishes():
    over = ["case.dtype=float64", "network.width=8", "network.depth=2", "points.interior=40",
            "points.boundary=8", "points.interface=6", "decomposition.grid=[2, 2]"]
    soft = Solver(build_problem(load(CASES / "heat1d.toml", over)), SerialComm())
    hard = Solver(build_problem(load(CASES / "heat1d.toml", over + ["network.hard_initial=true"])),
                  SerialComm())
    assert soft.model.output_transform is None
    assert hard.model.output_transform is not None
    _, soft_m = soft.closure()
    _, hard_m = hard.closure()
    # heat1d's boundary term holds the initial face and the x faces: the initial part is gone.
    t_axis = hard.problem.time_axis
    x = hard.batch.x.detach()
    on_t0 = (x[..., t_axis] == hard.problem.cfg.domain.time[0]) & (hard.batch.bc_w > 0).any(-1)
    assert bool(on_t0.any())
    err = (hard.model(x) - hard.batch.bc_target).detach()[on_t0]
    assert float(err.abs().max()) <= 1e-13
    assert soft_m["boundary"] > 0


def test_hard_initial_needs_time():
    base = {"domain": {"lower": [0.0], "upper": [1.0]}, "decomposition": {"grid": [1]},
            "pde": {"name": "poisson"}, "network": {"hard_initial": True}}
    with pytest.raises(ConfigError, match="'network.hard_initial' = true needs a time axis"):
        from_dict(base)

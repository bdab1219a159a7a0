"""Gauss-Newton rows on domains with a shape and on cases with [[boundary]] conditions: the
boundary entries (Dirichlet, Neumann, Robin, outflow) as residual rows, data and observation
rows gathered per expert, and their per-point Jacobians."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ddpinn.nn.constraints import InitialConstraint
from ddpinn.training.gauss_newton import LevenbergMarquardt
from ddpinn.training.loss import local_loss
from ddpinn.training.lsq import problem_layout, residual_blocks

from test_gauss_newton import (CASES, MPI_CASES, SOLVERS, _args, _context,
                               jacobian_and_autograd, small_solver)

NEUMANN_WALLS = ('boundary=[{tags = ["x_lower", "x_upper"], kind = "neumann", '
                 'values = "exact"}, {tags = "initial", kind = "dirichlet", values = "exact"}]')
# Values only: boundary, initial and data rows in the batch's value-only block
DIRICHLET_WALLS = ('boundary=[{tags = ["x_lower", "x_upper", "initial"], kind = "dirichlet", '
                   'values = "exact"}]')

SHAPED = {
    # L-shape with a hole, cut cells: Dirichlet outside, Neumann on the hole
    "l_shape_hole": (MPI_CASES / "shape_invariance.toml", ()),
    "l_shape_hole_data": (MPI_CASES / "shape_invariance.toml", ("points.data=10",)),
    # a box with [[boundary]] tables: Neumann at x = 0, Robin at x = 1, initial data
    "heat_neumann_robin": (CASES / "heat1d_neumann_robin.toml", ()),
    # [[boundary]] tables, observations from a file, points.data and an inverse unknown
    "heat_observations": (CASES / "heat1d_inverse_csv.toml", (NEUMANN_WALLS, "points.data=6")),
    # Dirichlet and initial values only, observations and points.data: value-only rows
    "heat_values_only": (CASES / "heat1d_inverse_csv.toml",
                         (DIRICHLET_WALLS, "points.data=6")),
    # Navier-Stokes around a cylinder: inflow, no-slip walls and an outflow condition
    "cylinder_outflow": (CASES / "cylinder2d_dfg.toml",
                         ("points.interior=24", "points.boundary=6", "network.width=6")),
}


def expert_losses(s, terms) -> torch.Tensor:
    """local_loss's loss of every expert (E,), from its per-expert metrics: the weighted
    PDE, boundary and data terms and the weighted interface conditions of its sides."""
    w, m = s.cfg.loss, terms.metrics
    assert s.problem.residual_weights is None and s.active_causal is None
    out = w.residual * m["residual"] + w.boundary * m["boundary"] + w.data * m["data"]
    for n in s.conditions.names:
        out = out + s.problem.condition_weights.get(n, 1.0) * m[f"if_{n}"]
    return out


@pytest.mark.parametrize("name", list(SHAPED))
def test_shaped_rows_sum_of_squares_is_each_experts_loss(name):
    s = small_solver(SHAPED[name][0], *SHAPED[name][1])
    bc = s.batch.boundary_rows
    assert bc is not None
    if name == "heat_values_only":
        assert not bc.needs_gradient and s.batch.value_rows > 0
    elif name != "heat_observations":
        assert bc.needs_gradient  # Neumann / Robin / outflow rows read the gradients
        assert s.batch.value_rows == 0
    args, kw, leaves = _args(s)
    terms = local_loss(_context(args, kw), args[0], args[2])
    want = expert_losses(s, terms)
    assert float(want.sum()) == pytest.approx(float(terms.total.detach()), rel=1e-12)
    params = list(s.model.parameters()) + list(leaves.values())
    g_loss = torch.autograd.grad(terms.total, params, allow_unused=True)
    layout = problem_layout(s.problem)
    assert layout.res_rows == int(s.problem.shape_counts.interior.max())
    for lay in (None, layout):
        r = residual_blocks(*args, **kw, layout=lay)
        per = r.pow(2).sum(1)  # (E,)
        assert torch.allclose(per.detach(), want, rtol=1e-12, atol=0)
        g_lsq = torch.autograd.grad(per.sum(), params, allow_unused=True)
        for a, b in zip(g_loss, g_lsq):
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-9, atol=1e-12 * float(a.abs().max()))
    assert r.shape[1] < residual_blocks(*args, **kw).shape[1]  # the layout is compact
    if name == "heat_csv_observations":
        assert s.problem.observation_counts is not None and layout.data_rows > 6
        assert float(terms.metrics["data"].min()) > 0


@pytest.mark.parametrize("name", ["l_shape_hole_data", "heat_neumann_robin",
                                  "heat_observations", "heat_values_only", "cylinder_outflow"])
def test_shaped_per_point_jacobian_matches_autograd_rows(name):
    s = small_solver(SHAPED[name][0], *SHAPED[name][1])
    lm, r, J, r_ref, row = jacobian_and_autograd(s)
    assert torch.allclose(r, r_ref.detach(), rtol=0, atol=1e-13)
    M = r.shape[1]
    # every block: PDE rows first, then boundary entries, data, interface rows
    picks = np.unique(np.r_[np.linspace(0, M - 1, 10).astype(int), _boundary_rows(s, lm)])
    for m in picks:
        want = row(m)
        assert torch.allclose(J[:, m], want, rtol=1e-10, atol=1e-13)
        assert float(want.abs().max()) > 0 or float(r_ref[:, m].abs().max()) == 0


def _boundary_rows(s, lm) -> np.ndarray:
    """A few rows of the boundary block (after the PDE rows), with nonzero weight."""
    from ddpinn.nn.taylor_engine import make_fields

    args = _args(s)[0]
    x = s.batch.x.detach().requires_grad_(True)
    fields = make_fields(s.model, x, s.pde.axes, s.pde.outputs, s.cfg.network.derivatives)
    q = int(s.pde.residual(fields, args[2]).shape[-1])
    w = s.batch.boundary_rows.w.flatten(1).amax(0)  # (K m,)
    live = np.flatnonzero(w.numpy() > 0)
    return lm.layout.res_rows * q + live[np.linspace(0, len(live) - 1, 8).astype(int)]


def test_initial_constraint_repeats_its_experts():
    c = InitialConstraint(lambda x: torch.sin(x[..., :1]), [True], 1, 0.0, [1.0, 0.0],
                          [0.5, 0.5])
    c.cached(torch.zeros(2, 3, 2))
    rep = c.repeat_experts(3)
    assert torch.equal(rep.first[:, 0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert torch.equal(rep.slope[:, 0], torch.tensor([2.0, 2, 2, 0, 0, 0]))
    assert rep._cache == {} and len(c._cache) == 1 and c.first.shape == (2, 1)
    g = torch.Generator().manual_seed(0)
    x, net = torch.rand(2, 4, 2, generator=g), torch.rand(2, 4, 1, generator=g)
    assert torch.equal(rep.apply(x.repeat_interleave(3, 0), net.repeat_interleave(3, 0)),
                       c.apply(x, net).repeat_interleave(3, 0))


@pytest.mark.parametrize("name", ["l_shape_hole_data", "heat_values_only", "cylinder_outflow"])
def test_memory_estimate_counts_the_rows_of_a_shaped_case(name):
    from ddpinn.training.memory import residual_rows

    s = small_solver(SHAPED[name][0], *SHAPED[name][1])
    r, _ = LevenbergMarquardt(s).residuals_and_jacobian()
    assert residual_rows(s.problem, s.batch.x.shape[1]) == r.shape[1]


BOXES = {**SOLVERS, "tgv_time_slabs": (CASES / "tgv3d_re100.toml",
                                       ("decomposition.grid=[1, 1, 1, 4]",)),
         "heat_csv_observations": (CASES / "heat1d_inverse_csv.toml", ("points.data=6",))}


@pytest.mark.parametrize("name", sorted(BOXES))
def test_memory_estimate_bounds_the_rows_of_a_box_case(name):
    """Exactly the rows of the compact layout on a box; observations (rows after all others)
    keep the looser bound."""
    from ddpinn.training.memory import residual_rows

    s = small_solver(BOXES[name][0], *BOXES[name][1], 'stages.1.optimizer="gauss_newton"')
    r, _ = LevenbergMarquardt(s).residuals_and_jacobian()
    rows = residual_rows(s.problem, s.batch.x.shape[1])
    if name == "heat_csv_observations":
        assert rows >= r.shape[1]
    else:
        assert rows == r.shape[1]


def test_per_point_copies_of_a_hard_initial_model_give_the_autograd_jacobian():
    """per_point_copy repeats the output transform's experts (repeat_experts)."""
    s = small_solver(CASES / "heat1d.toml", "network.hard_initial=true")
    assert s.model.output_transform is not None
    _, r, J, r_ref, row = jacobian_and_autograd(s)
    assert torch.allclose(r, r_ref.detach(), rtol=0, atol=1e-13)
    for m in np.linspace(0, r.shape[1] - 1, 10).astype(int):
        assert torch.allclose(J[:, m], row(m), rtol=1e-10, atol=1e-13)


def test_per_point_copies_of_a_periodic_model_keep_the_shared_frequencies():
    """periodic_wavevectors (P, M) are the same for every expert: per_point_copy keeps them whole
    (repeated over experts, it made Gauss-Newton on periodic harmonics fail)."""
    s = small_solver(CASES / "advection1d.toml", 'stages.1.optimizer="gauss_newton"')
    assert s.model.periodic_axes
    _, r, J, r_ref, row = jacobian_and_autograd(s)
    assert torch.allclose(r, r_ref.detach(), rtol=0, atol=1e-13)
    for m in np.linspace(0, r.shape[1] - 1, 10).astype(int):
        assert torch.allclose(J[:, m], row(m), rtol=1e-10, atol=1e-13)

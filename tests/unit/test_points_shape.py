"""Points of a domain with a shape: every point where it belongs, the same points for a sid
whatever else a rank owns, and boundary conditions that the exact solution satisfies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.io.config import load
from ddpinn.problem import build_problem
from ddpinn.training.boundary_loss import boundary_residual
from ddpinn.training.points_shape import build_shape_points

ROOT = Path(__file__).resolve().parents[2]
SHAPE_CASE = ROOT / "tests" / "mpi" / "cases" / "shape_invariance.toml"


def _problem(case, *sets):
    return build_problem(load(case, list(sets)))


def _space(x, problem):
    return x[:, [a for a in range(x.shape[1]) if a != problem.time_axis]]


def test_cut_cells_drop_the_missing_corner_and_keep_counts_by_volume():
    problem = _problem(SHAPE_CASE)
    d, counts = problem.decomposition, problem.shape_counts
    assert d.n_subdomains == 12  # 16 cells, the 4 of the missing corner dropped
    frac = np.asarray(d.volume_fraction)
    assert (frac > 0).all() and (frac < 1).any()
    full = frac == 1.0
    assert (counts.interior[full] == 48).all()
    assert (counts.interior[~full] < 48).all()


def test_every_point_is_inside_its_cell_and_the_domain():
    problem = _problem(SHAPE_CASE)
    d, shape, counts = problem.decomposition, problem.shape, problem.shape_counts
    batch = build_shape_points(problem, list(range(d.n_subdomains)), seed=5)
    x = batch.x.numpy()
    for e in range(d.n_subdomains):
        n = int(counts.rows[e])
        pts = x[e, :n]
        assert (pts >= d.lower[e] - 1e-12).all() and (pts <= d.upper[e] + 1e-12).all()
        assert shape.inside(pts).all()
        n_int, n_b = int(counts.interior[e]), int(counts.boundary[e])
        boundary = pts[n_int:n_int + n_b]
        assert np.abs(shape.sdf(boundary)).max() < 1e-8
    bc = batch.boundary_rows
    # Each boundary point of an expert carries one condition here (one per tag).
    assert int((bc.w.sum(-1) > 0).sum()) == int(counts.boundary.sum())


def test_points_of_a_sid_do_not_depend_on_the_other_sids_of_the_rank():
    problem = _problem(SHAPE_CASE)
    S = problem.decomposition.n_subdomains
    whole = build_shape_points(problem, list(range(S)), seed=5)
    part = build_shape_points(problem, [3, 7, 8], seed=5)
    for e, sid in enumerate([3, 7, 8]):
        assert torch.equal(whole.x[sid], part.x[e])
        assert torch.equal(whole.boundary_rows.target[sid], part.boundary_rows.target[e])
    sides = [(sid, r, itf.iid) for sid, r, itf in
             [(s, r, i) for (e, r, i) in part.sides for s in [[3, 7, 8][e]]]]
    whole_sides = {(s, r, i.iid) for (s, r, i) in whole.sides if s in (3, 7, 8)}
    assert set(sides) == whole_sides


def _exact_fields(problem, x):
    """u and its gradient from the PDE's exact solution: (E, N, m), (E, N, m, d)."""
    x = x.clone().requires_grad_(True)
    u = problem.pde.exact(x, problem.pde.params)
    grads = [torch.autograd.grad(u[..., k].sum(), x, retain_graph=True)[0]
             for k in range(u.shape[-1])]
    return u.detach(), torch.stack(grads, dim=2)


@pytest.mark.parametrize("case", [SHAPE_CASE, ROOT / "cases" / "heat1d_neumann_robin.toml",
                                  ROOT / "cases" / "wave1d.toml"])
def test_the_exact_solution_meets_every_boundary_condition(case):
    """Neumann data on a hole, Neumann and Robin walls given as expressions, and a wave's
    initial rate: the exact solution's misfit is rounding only."""
    problem = _problem(case)
    batch = build_shape_points(problem, list(range(problem.decomposition.n_subdomains)),
                               seed=1)
    u, grad = _exact_fields(problem, batch.x)
    misfit = boundary_residual(batch.boundary_rows, u, grad) * (batch.boundary_rows.w > 0)
    assert float(misfit.abs().max()) < 1e-10
    assert batch.boundary_rows.needs_gradient


VALUES_ONLY = ('boundary=[{tags = ["x_lower", "x_upper", "initial"], kind = "dirichlet", '
               'values = "exact"}]')


@pytest.mark.parametrize("sets, apart", [((VALUES_ONLY, "points.data=5"), True),
                                         ((VALUES_ONLY, "decomposition.grid=[1, 2]"), True),
                                         ((), False)])
def test_values_only_conditions_put_boundary_and_data_rows_after_the_derivative_rows(
        sets, apart):
    """Dirichlet and initial values only: the boundary, initial and data rows form the
    trailing value-only block, the interior and interface rows the derivative block before
    it; a condition that reads a derivative (heat1d_neumann_robin) keeps one block."""
    problem = _problem(ROOT / "cases" / "heat1d_neumann_robin.toml", *sets)
    counts, S = problem.shape_counts, problem.decomposition.n_subdomains
    assert counts.values_apart is apart
    batch = build_shape_points(problem, list(range(S)), seed=3)
    E, N, _ = batch.x.shape
    assert N == counts.layout_rows and batch.value_rows == counts.value_block
    first_value = N - batch.value_rows
    bc = batch.boundary_rows
    live = bc.w.sum(-1) > 0  # (E, K)
    assert int(live.sum()) == int(counts.entries.sum())
    assert (batch.res_w[:, first_value:] == 0).all()
    if not apart:
        assert batch.value_rows == 0
        return
    assert N == int((counts.interior + counts.n_interface * counts.interfaces).max()
                    + counts.value_points.max())
    assert bool((bc.rows[live] >= first_value).all())
    data_rows = torch.nonzero(batch.data_w.sum(-1) > 0)[:, 1]
    assert len(data_rows) == int(counts.data.sum()) and bool((data_rows >= first_value).all())
    for e, row0, itf in batch.sides:
        assert row0 >= int(counts.interior[e]) and row0 + counts.n_interface <= first_value
    for e in range(E):  # the interior rows come first, as in the single block
        assert torch.equal(batch.res_w[e] > 0, torch.arange(N) < int(counts.interior[e]))

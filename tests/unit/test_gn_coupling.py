"""The coupled Gauss-Newton step (ddpinn.training.gn_coupling) against brute force: the
Gauss-Newton matrix of the whole objective from the Jacobian of its global least-squares
residual vector, with both sides of every interface live."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import CONDITIONS, condition
from ddpinn.io.config import ConfigError, load
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem
from ddpinn.training.gauss_newton import LevenbergMarquardt
from ddpinn.training.gn_blocks import _own, damped_factors, expert_blocks
from ddpinn.training.gn_coupling import (Preconditioner, apply_h, block_jacobi,
                                         curvature_terms, pcg)
from ddpinn.training.lsq import residual_blocks
from ddpinn.training.solver import Solver

CASES = Path(__file__).resolve().parents[2] / "cases"
MPI_CASES = Path(__file__).resolve().parents[1] / "mpi" / "cases"
# symmetric, one-sided, symmetric: each one value per point for Poisson (m = q = 1)
CONDS = '["average_solution", "interface_residual", "normal_derivative_continuity"]'
GLOBAL = ('stages.1.optimizer="gauss_newton"', 'stages.1.coupling="global"')


def _solver(width, case=CASES / "poisson2d.toml"):
    cfg = load(case,
               ["case.dtype=float64", f"network.width={width}", "network.depth=1",
                "points.interior=40", "points.boundary=8", "points.interface=5",
                f"interface.conditions={CONDS}", *GLOBAL,
                "interface.weights={average_solution = 10.0, interface_residual = 0.01, "
                "normal_derivative_continuity = 0.1}"])
    return Solver(build_problem(cfg), SerialComm())


def _live_complete(plan, comm, values, handle):
    """exchange.complete without the detach: every side local (one rank)."""
    assert not plan.remote
    perm = torch.empty(plan.n_sides, dtype=torch.long)
    perm[plan.local_self] = plan.local_partner
    return {q: values[q][perm] for q in values}


def _brute_force(s, lm, monkeypatch):
    """The global least-squares residual R (own rows, symmetric sides' rows / sqrt 2,
    one-sided rows in full) and its Jacobian in all parameters (rows, E * P)."""
    monkeypatch.setattr(exchange, "complete", _live_complete)
    params = list(s.model.parameters())
    r = residual_blocks(s.model, s.pde, dict(s.pde.params), s.batch, s.plan,
                        s.layout.peer_comm, s.conditions, s.problem.condition_weights,
                        s.cfg.loss, s.quantities, derivatives=s.cfg.network.derivatives,
                        layout=lm.layout)
    E, M = r.shape
    n = s.plan.n_points
    side = torch.tensor([1.0] * n + [math.sqrt(2.0)] * n + [1.0] * n,
                        dtype=torch.float64) / math.sqrt(2.0)
    scale = torch.cat([torch.ones(M - lm.layout.slots * 3 * n),
                       side.repeat(lm.layout.slots)]).to(r)
    R = (r * scale).reshape(-1)
    rows = []
    for i in range(len(R)):
        g = torch.autograd.grad(R[i], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([torch.zeros(E, p[0].numel(), dtype=R.dtype) if x is None
                               else x.reshape(E, -1) for x, p in zip(g, params)], 1)
                    .reshape(-1))
    return R.detach(), torch.stack(rows)


# parameter space (M >= P), sample space, and a cut domain (an L-shape with a hole)
@pytest.mark.parametrize("width, case", [(4, CASES / "poisson2d.toml"),
                                         (32, CASES / "poisson2d.toml"),
                                         (4, MPI_CASES / "shape_invariance.toml")],
                         ids=["box-parameter", "box-sample", "shape"])
def test_matrix_free_product_and_pcg_match_the_brute_force_gauss_newton_matrix(
        width, case, monkeypatch):
    s = _solver(width, case)
    lm = LevenbergMarquardt(s)
    lm.cg_settings = (20, 1e-3)
    r, J = lm.residuals_and_jacobian()
    E, M, P = J.shape
    gram, space = expert_blocks(J)
    assert space == ("parameter" if width == 4 else "sample")
    assert s.plan.n_sides >= 2 * E
    R, JR = _brute_force(s, lm, monkeypatch)
    H = JR.T @ JR  # (E P, E P)
    # The gradient is the detached one of every expert (checks the 1/sqrt 2 weighting).
    g = torch.einsum("emp,em->ep", J, r).reshape(-1)
    assert torch.allclose(JR.T @ R, g, rtol=1e-11, atol=1e-12 * float(g.abs().max()))
    Js = [_own(J, e) for e in range(E)]
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(E, P, generator=gen, dtype=torch.float64)
    vs = [_own(v, e) for e in range(E)]
    Hv = torch.cat(apply_h(lm.coupling, Js, vs, 0.0)).reshape(-1)
    want = H @ v.reshape(-1)
    assert float((Hv - want).norm() / want.norm()) < 1e-10
    # block Jacobi alone is far from it (over 1e-3 of |H v| on the box, 9e-4 on the shape)
    block = torch.einsum("emp,emq,eq->ep", J, J, v).reshape(-1)
    assert float((block - want).norm() / want.norm()) > 1e-4
    assert sum(curvature_terms(lm.coupling, Js, vs)) == \
        pytest.approx(float(v.reshape(-1) @ want), rel=1e-10)
    # PCG with many iterations solves (H + lam I) d = -g
    lam = 1e-3 * float(H.diagonal().mean())
    b = [-t for t in (_own(g.reshape(E, P), e) for e in range(E))]
    precond = block_jacobi(Js, damped_factors(gram, lam), space, lam)
    d, its, rel = pcg(lm.coupling, Js, precond, b, lam, SerialComm(), E, 2000, 1e-13)
    exact = torch.linalg.solve(H + lam * torch.eye(E * P, dtype=H.dtype), -g)
    assert rel <= 1e-13 and its < 2000
    assert float((torch.cat(d).reshape(-1) - exact).norm() / exact.norm()) < 1e-10
    # the preconditioner is the inverse of the damped diagonal blocks
    z = precond(vs)
    for e in range(E):
        A = J[e].T @ J[e] + lam * torch.eye(P, dtype=J.dtype)
        assert torch.allclose(A @ z[e][0], v[e], rtol=1e-9, atol=1e-9 * float(v.abs().max()))


def _refusal(case, sets, match):
    with pytest.raises(ConfigError, match=match):
        build_problem(load(case, list(sets)))


def test_conditions_that_break_the_coupled_form_and_shared_unknowns_are_refused():
    @condition("test_one_way", needs=("u",), residual=True)
    def one_way(mine, other):
        return mine["u"] - 0.5 * other["u"]

    @condition("test_cubic", needs=("u",), residual=True)
    def cubic(mine, other):
        return (mine["u"] - other["u"]) ** 3

    try:
        for name, why in (("test_one_way", "not antisymmetric"), ("test_cubic", "not linear")):
            sets = (f'interface.conditions=["average_solution", "{name}"]',
                    "interface.weights={average_solution = 10.0}", *GLOBAL)
            _refusal(CASES / "poisson2d.toml", sets,
                     rf"stages\[1\]\.coupling.*{name}.*{why}")
            build_problem(load(CASES / "poisson2d.toml",
                               [*sets[:3], 'stages.1.coupling="block"']))
    finally:
        CONDITIONS.pop("test_one_way", None)
        CONDITIONS.pop("test_cubic", None)
    upwind = ('interface.conditions={space = ["average_solution"], '
              'time = ["upwind_solution", "upwind_normal_derivative"]}', *GLOBAL)
    _refusal(CASES / "heat1d.toml", upwind,
             r"stages\[1\]\.coupling.*'upwind_solution'.*reads the other side")
    _refusal(MPI_CASES / "invariance.toml", GLOBAL, r"stages\[1\]\.coupling.*pde\.inverse")
    # the stage fields themselves
    _refusal(CASES / "poisson2d.toml", ('stages.1.coupling="coupled"',),
             r"stages\[1\]\.coupling.*'coupled'.*block, global")
    _refusal(CASES / "poisson2d.toml", ('stages.0.coupling="global"',),
             r"stages\[0\]\.coupling.*'adam'")
    _refusal(CASES / "poisson2d.toml", (*GLOBAL, "stages.1.cg_iterations=0"),
             r"stages\[1\]\.cg_iterations")
    _refusal(CASES / "poisson2d.toml", (*GLOBAL, "stages.1.cg_tolerance=1.5"),
             r"stages\[1\]\.cg_tolerance")


@pytest.mark.parametrize("width", [4, 32], ids=["parameter", "sample"])
def test_kept_preconditioner_is_the_old_damped_block_inverse_and_pcg_still_solves(width):
    """precondition_every = 3: the Gram matrices of the first step serve two more steps; the
    preconditioner is then the inverse of the old damped blocks (refactored for a new
    lambda), and PCG still solves the current system."""
    s = _solver(width)
    lm = LevenbergMarquardt(s)
    lm.cg_settings = (20, 1e-3)
    pre = Preconditioner(3)
    _, J1 = lm.residuals_and_jacobian()
    E, M, P = J1.shape
    J1s = [_own(J1, e) for e in range(E)]
    pre.begin_step(J1s, J1.shape)
    assert pre.rebuilt
    with torch.no_grad():  # another point: another Jacobian
        for p in s.model.parameters():
            p.mul_(1.1)
    r2, J2 = lm.residuals_and_jacobian()
    assert float((J2 - J1).norm()) > 1e-3 * float(J1.norm())
    J2s = [_own(J2, e) for e in range(E)]
    pre.begin_step(J2s, J2.shape)
    assert not pre.rebuilt
    lam = 1e-2
    precond = pre.apply_for(lam)
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(E, P, generator=gen, dtype=torch.float64)
    z = precond([_own(v, e) for e in range(E)])
    for e in range(E):
        A = J1[e].T @ J1[e] + lam * torch.eye(P, dtype=J1.dtype)
        assert torch.allclose(A @ z[e][0], v[e], rtol=1e-9, atol=1e-9 * float(v.abs().max()))
    b = [-t for t in (_own(torch.einsum("emp,em->ep", J2, r2), e) for e in range(E))]
    d, its, rel = pcg(lm.coupling, J2s, precond, b, lam, SerialComm(), E, 4000, 1e-12)
    gram2, space2 = expert_blocks(J2)
    fresh = block_jacobi(J2s, damped_factors(gram2, lam), space2, lam)
    d2, _, _ = pcg(lm.coupling, J2s, fresh, b, lam, SerialComm(), E, 4000, 1e-12)
    assert rel <= 1e-12
    assert float((torch.cat(d) - torch.cat(d2)).norm() / torch.cat(d2).norm()) < 1e-8
    # the rebuild schedule: steps 0 and 3, and at once after drop()
    pre.begin_step(J2s, J2.shape)
    assert not pre.rebuilt
    pre.begin_step(J2s, J2.shape)
    assert pre.rebuilt
    pre.begin_step(J2s, J2.shape)
    assert not pre.rebuilt
    pre.drop()
    pre.begin_step(J2s, J2.shape)
    assert pre.rebuilt


def test_precondition_every_is_checked():
    base = ("case.dtype=float64", *GLOBAL)
    with pytest.raises(ConfigError, match=r"stages\[1\]\.precondition_every"):
        load(CASES / "poisson2d.toml", [*base, "stages.1.precondition_every=0"])
    with pytest.raises(ConfigError, match=r"stages\[1\]\.precondition_every.*coupling"):
        load(CASES / "poisson2d.toml", ['stages.1.optimizer="gauss_newton"',
                                        "stages.1.precondition_every=4"])
    cfg = load(CASES / "poisson2d.toml", [*base, "stages.1.precondition_every=4"])
    assert cfg.stages[1].precondition_every == 4

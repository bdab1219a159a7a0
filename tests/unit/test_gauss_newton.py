"""Gauss-Newton / Levenberg-Marquardt: the core iteration on small least-squares problems, the
least-squares form of the loss, the per-point Jacobians, and the per-expert linear algebra."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.interface.conditions import CONDITIONS, condition
from ddpinn.io.config import ConfigError, load
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem
from ddpinn.training.gauss_newton import LMCore, LevenbergMarquardt
from ddpinn.training.gn_blocks import _own, damped_step, expert_blocks, matvec
from ddpinn.training.context import StepContext, StepSettings
from ddpinn.training.loss import local_loss
from ddpinn.training.lsq import compact_layout, residual_blocks, residual_form_missing
from ddpinn.training.solver import Solver

CASES = Path(__file__).resolve().parents[2] / "cases"
MPI_CASES = Path(__file__).resolve().parents[1] / "mpi" / "cases"


class Problem(LMCore):
    """Experts e = 0..E-1 with residuals ``fn(x_e, shared) -> (r (M,), J (M, P + k))``."""

    def __init__(self, fn, x0, shared0=(), **kw):
        x0 = torch.as_tensor(np.asarray(x0, float))
        super().__init__(SerialComm(), len(x0), len(shared0), **kw)
        self.fn, self.x = fn, x0.clone()
        self.s = torch.as_tensor(np.asarray(shared0, float))
        self.nan_trials = 0  # the next so many closures return NaN

    def residuals_and_jacobian(self):
        parts = [self.fn(self.x[e], self.s, e) for e in range(len(self.x))]
        return torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])

    def get(self):
        return self.x.clone(), self.s.clone()

    def put(self, dist, shared):
        self.x, self.s = dist.clone(), shared.clone()

    def closure(self):
        if self.nan_trials:
            self.nan_trials -= 1
            return math.nan, {}
        r, _ = self.residuals_and_jacobian()
        return float(r.pow(2).sum()), {}


def rosenbrock(x, s, e):
    r = torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])
    J = torch.tensor([[-20 * float(x[0]), 10.0], [-1.0, 0.0]], dtype=torch.float64)
    return r, J


def test_lm_reaches_the_minimum_of_rosenbrock_and_never_increases_the_loss():
    lm = Problem(rosenbrock, [[-1.2, 1.0]], lam=1e-3)
    seen = [lm.closure()[0]]
    for _ in range(100):
        seen.append(lm.step(lm.closure)[0])
    assert np.all(np.diff(seen) <= 0)
    assert torch.allclose(lm.x[0], torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-10)
    assert seen[-1] < 1e-20


T = torch.linspace(0, 1, 7, dtype=torch.float64)
B_TRUE = (0.5, -0.3)


def exp_fit(x, s, e):
    """y_e(t) = a exp(b_e t): a shared by both experts, b_e each expert's own."""
    y = 2.0 * torch.exp(B_TRUE[e] * T)
    f = s[0] * torch.exp(x[0] * T)
    J = torch.stack([T * f, torch.exp(x[0] * T)], 1)  # d/db_e, d/da
    return f - y, J


def test_lm_fits_a_curve_with_a_shared_parameter_to_its_known_values():
    lm = Problem(exp_fit, [[0.0], [0.0]], shared0=[1.0], lam=1e-2)
    for _ in range(60):
        lm.step(lm.closure)
    assert abs(float(lm.s[0]) - 2.0) < 1e-8
    assert torch.allclose(lm.x[:, 0], torch.tensor(B_TRUE, dtype=torch.float64), atol=1e-8)


def test_a_nan_trial_is_rejected_with_more_damping_and_the_loss_still_decreases():
    lm = Problem(rosenbrock, [[-1.2, 1.0]], lam=1e-3)
    loss0 = lm.closure()[0]
    lm.current = (loss0, {})
    lm.nan_trials = 2  # the full step and the shorter one of the line search
    loss1, metrics = lm.step(lm.closure)
    assert metrics["gn_tries"] == 2  # the NaN trial was rejected, the second accepted
    assert loss1 < loss0
    lam_after_reject = 1e-3 * 2  # nu = 2 on the first rejection
    assert lm.lam <= lam_after_reject * 2 and lm.lam >= lam_after_reject / 3


def test_no_accepted_trial_keeps_the_point():
    lm = Problem(rosenbrock, [[-1.2, 1.0]], lam=1e-3, max_tries=3)
    x0, loss0 = lm.x.clone(), lm.closure()[0]
    lm.nan_trials = 10
    lm.current = (loss0, {})
    lm.step(lm.closure)  # every trial NaN; the start point is evaluated again (NaN too)
    assert torch.equal(lm.x, x0)
    assert lm.lam == 1e-3 * 2 * 4 * 8  # nu doubles at every rejection


@pytest.mark.parametrize("M,P", [(3000, 900), (40, 90)])
def test_matvec_is_the_product_with_the_same_bits_for_any_batch_and_thread_count(M, P):
    g = torch.Generator().manual_seed(2)
    J = torch.randn(3, M, P, generator=g, dtype=torch.float64)
    x = torch.randn(1, P, generator=g, dtype=torch.float64)
    y = torch.randn(1, M, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        Je = _own(J, 1)  # expert 1 of a batch of 3, on its own storage
        got = matvec(Je, x), matvec(Je, y, transpose=True)
        alone = _own(J[1:2], 0)  # the same expert on a rank that owns it alone
        torch.set_num_threads(2)
        again = matvec(alone, x), matvec(alone, y, transpose=True)
    finally:
        torch.set_num_threads(threads)
    assert got[0].shape == (1, M) and got[1].shape == (1, P)
    assert torch.equal(got[0], again[0]) and torch.equal(got[1], again[1])
    assert torch.allclose(got[0][0], J[1] @ x[0], rtol=1e-12, atol=1e-12)
    assert torch.allclose(got[1][0], J[1].T @ y[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("M,P", [(90, 40), (30, 40), (41, 41)])
def test_expert_linear_algebra_does_not_depend_on_the_batch_nor_the_threads(M, P):
    g = torch.Generator().manual_seed(1)
    J = torch.randn(4, M, P, generator=g, dtype=torch.float64)
    r = torch.randn(4, M, generator=g, dtype=torch.float64)

    def step(Js, rs):
        gram, space = expert_blocks(Js)
        assert space == ("parameter" if M >= P else "sample")
        return damped_step(Js, gram, space, rs, 1e-3)

    threads = torch.get_num_threads()
    try:
        full = step(J, r)
        for sl in (slice(0, 1), slice(1, 2), slice(1, 3), slice(3, 4)):
            assert torch.equal(full[sl], step(J[sl], r[sl]))
        torch.set_num_threads(2)
        assert torch.equal(full, step(J, r))
    finally:
        torch.set_num_threads(threads)
    # It is the damped least-squares step.
    want = -torch.linalg.solve(J[0].T @ J[0] + 1e-3 * torch.eye(P, dtype=torch.float64),
                               J[0].T @ r[0])
    assert torch.allclose(full[0], want, rtol=1e-8, atol=1e-10)


def test_shared_unknowns_take_the_exact_step_of_the_coupled_system():
    g = torch.Generator().manual_seed(2)
    E, M, P, k, lam = 3, 20, 6, 2, 1e-2
    J = torch.randn(E, M, P + k, generator=g, dtype=torch.float64)
    r = torch.randn(E, M, generator=g, dtype=torch.float64)
    lm = LMCore(SerialComm(), E, k, lam=lam)
    gram, space = expert_blocks(J[..., :P])
    d, ds = lm.solve(J, r, gram, space)
    # The dense system over all experts' parameters and the shared ones.
    n = E * P + k
    big = torch.zeros(E * M, n, dtype=torch.float64)
    for e in range(E):
        big[e * M:(e + 1) * M, e * P:(e + 1) * P] = J[e, :, :P]
        big[e * M:(e + 1) * M, E * P:] = J[e, :, P:]
    want = -torch.linalg.solve(big.T @ big + lam * torch.eye(n, dtype=torch.float64),
                               big.T @ r.reshape(-1))
    assert torch.allclose(torch.cat([d.reshape(-1), ds]), want, rtol=1e-9, atol=1e-12)


def small_solver(case, *extra):
    cfg = load(case, ["case.dtype=float64", "network.width=8", "network.depth=2",
                      "points.interior=40", "points.boundary=8", "points.interface=6",
                      *extra])
    return Solver(build_problem(cfg), SerialComm())


SOLVERS = {
    "poisson": (CASES / "poisson2d.toml", ()),
    "kovasznay": (CASES / "kovasznay.toml", ()),
    "heat_inverse_data": (MPI_CASES / "invariance.toml", ()),
    "heat_causal_weighted": (CASES / "heat1d.toml",
                             ("causal.chunks=4", "causal.epsilon=1.0",
                              'interface.conditions={space = ["average_solution"], '
                              'time = ["upwind_solution", "upwind_normal_derivative"]}')),
    "kovasznay_equation_weights": (CASES / "kovasznay.toml", ("loss.residual=[1.0, 2.0, 0.5]",)),
}


def _args(s):
    n_local = s.model.n_experts
    leaves = {n: p.detach().reshape(1, 1).expand(n_local, 1).clone().requires_grad_(True)
              for n, p in s.shared.items()}
    params = {**s.pde.params, **leaves}
    return ((s.model, s.pde, params, s.batch, s.plan, s.layout.peer_comm, s.conditions,
             s.problem.condition_weights, s.cfg.loss, s.quantities),
            dict(derivatives=s.cfg.network.derivatives, causal=s.active_causal,
                 residual_weights=s.problem.residual_weights), leaves)


def jacobian_and_autograd(s):
    """The Gauss-Newton rows r (E, M) and per-point Jacobian J (E, M, P) of solver ``s``,
    the same rows from :func:`residual_blocks` with their graph, and ``row(m)``: the Jacobian
    of row m by plain autograd (E, P), zero for parameters the row does not use."""
    lm = LevenbergMarquardt(s)
    r, J = lm.residuals_and_jacobian()
    args, kw, leaves = _args(s)
    r_ref = residual_blocks(*args, **kw, layout=lm.layout)
    params = list(s.model.parameters()) + list(leaves.values())
    E = r.shape[0]

    def row(m: int) -> torch.Tensor:
        g = torch.autograd.grad(r_ref[:, m].sum(), params, retain_graph=True,
                                allow_unused=True)
        return torch.cat([torch.zeros(E, p[0].numel(), dtype=r.dtype) if x is None
                          else x.reshape(E, -1) for x, p in zip(g, params)], 1)

    return lm, r, J, r_ref, row


def _context(args, kw):
    """The step context of local_loss from residual_blocks' arguments."""
    model, pde, params, batch, plan, comm, conditions, cond_weights, weights, quantities = args
    settings = StepSettings(weights, cond_weights, kw["residual_weights"], kw["derivatives"])
    return StepContext.of(pde, batch, plan, comm, conditions, settings, kw["causal"],
                          quantities)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_residual_blocks_sum_of_squares_is_the_loss_and_its_gradient(name):
    case, extra = SOLVERS[name]
    s = small_solver(case, *extra)
    if s.causal is not None:
        s.begin_step()
    args, kw, leaves = _args(s)
    terms = local_loss(_context(args, kw), args[0], args[2])
    params = list(s.model.parameters()) + list(leaves.values())
    g_loss = torch.autograd.grad(terms.total, params, allow_unused=True)
    for layout in (None, compact_layout(s.decomposition, s.cfg.points, s.problem.time_axis)):
        r = residual_blocks(*args, **kw, layout=layout)
        total = r.pow(2).sum()
        assert float(total) == pytest.approx(float(terms.total), rel=1e-12)
        g_lsq = torch.autograd.grad(total, params, allow_unused=True)
        for a, b in zip(g_loss, g_lsq):
            if a is None:
                assert b is None or float(b.abs().max()) == 0.0
            else:
                assert torch.allclose(a, b, rtol=1e-9, atol=1e-12 * float(a.abs().max()))


@pytest.mark.parametrize("name", ["poisson", "heat_inverse_data", "kovasznay_equation_weights"])
def test_per_point_jacobian_matches_autograd_rows(name):
    case, extra = SOLVERS[name]
    _, r, J, r_ref, row = jacobian_and_autograd(small_solver(case, *extra))
    assert torch.allclose(r, r_ref.detach(), rtol=0, atol=1e-13)
    for m in np.linspace(0, r.shape[1] - 1, 12).astype(int):
        assert torch.allclose(J[:, m], row(m), rtol=1e-10, atol=1e-13)


def test_shipped_conditions_have_a_residual_form_with_the_same_penalty():
    g = torch.Generator().manual_seed(0)
    names = [n for n, c in CONDITIONS.items() if c.residual is not None]
    assert "average_solution" in names and "upwind_solution" in names
    mine = {q: torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
            for q in ("u", "res", "flux", "dn", "dnn", "dtt", "gres")}
    other = {q: torch.randn(3, 5, 2, generator=g, dtype=torch.float64) for q in mine}
    mine["downstream"] = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    for n in names:
        diff = CONDITIONS[n].residual(mine, other)
        assert diff.shape == (3, 5, 2)
        assert torch.equal(CONDITIONS[n].fn(mine, other), diff.pow(2).sum(-1).mean(-1))


def test_penalty_only_condition_is_refused_by_gauss_newton_at_set_up():
    @condition("test_penalty_only", needs=("u",))
    def penalty_only(mine, other):
        return (mine["u"] - other["u"]).abs().sum((-1, -2))

    try:
        assert residual_form_missing(["average_solution", "test_penalty_only"]) == \
            ["test_penalty_only"]
        sets = ['interface.conditions=["average_solution", "test_penalty_only"]',
                'interface.weights={average_solution = 10.0}']
        build_problem(load(CASES / "poisson2d.toml", sets))  # Adam and L-BFGS: fine
        cfg = load(CASES / "poisson2d.toml", sets + ['stages.1.optimizer="gauss_newton"'])
        with pytest.raises(ConfigError, match=r"stages\[1\]\.optimizer.*test_penalty_only"):
            build_problem(cfg)
    finally:
        CONDITIONS.pop("test_penalty_only", None)


def test_memory_estimate_counts_the_jacobian():
    from ddpinn.training.memory import estimate_rank_memory

    cfg = load(CASES / "kovasznay.toml", ["case.dtype=float64", 'stages.1.optimizer="adam"'])
    adam = estimate_rank_memory(cfg, build_problem(cfg), 4)["optimizer"]
    cfg = load(CASES / "kovasznay.toml", ["case.dtype=float64",
                                          'stages.1.optimizer="gauss_newton"'])
    gn = estimate_rank_memory(cfg, build_problem(cfg), 4)
    # J alone: rows x parameters x 8 bytes, far above Adam's two moment buffers
    params = 2 * 48 + 48 + 3 * (48 * 48 + 48) + 48 * 3 + 3
    assert gn["optimizer"] > 1700 * params * 8 > 10 * adam

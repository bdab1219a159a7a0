"""Levenberg-Marquardt (damped Gauss-Newton) training of decomposed PINNs.

Each expert's loss is a sum of squares ||r_e||^2 (:mod:`ddpinn.training.lsq`). With the
neighbours' interface values held fixed (they are detached), r_e depends on expert e's
parameters only, so the Gauss-Newton matrix of the objective is block-diagonal over the
experts once the coupling through the interfaces is dropped (block Jacobi). Each block is
built and solved where its expert lives, batched over a rank's experts:

* in parameter space, d_e = -(J_e^T J_e + lambda I)^-1 J_e^T r_e, when the expert has at
  least as many rows M as parameters P;
* in sample space, d_e = -J_e^T (J_e J_e^T + lambda I)^-1 r_e, when M < P (the same step).

Shared parameters (unknowns of inverse problems) couple every expert: they get one more
block, J_s^T J_s and J_s^T r summed over the experts exactly (:func:`reproducible_sum`).

The damping lambda and the acceptance of a step are global. The step is tried on the
global objective; the blocks' model gives its exact slope (2 r.J d, summed exactly over
experts) and a curvature, and the parabola through the start value, that slope and the
value at the full step gives a second step length, tried when it differs from 1 (block
Jacobi tends to overshoot at the interfaces: both sides move toward each other's old
values). The better point is taken if it decreases the objective. The ratio of the full
step's actual decrease to the decrease the blocks predict is logged as ``gn_ratio`` (how
well block Jacobi models the coupled problem) and updates lambda (Nielsen, rho the ratio
clipped to [0, 1]): lambda *= max(1/3, 1 - (2 rho - 1)^3). No decrease (or a
NaN) -> lambda *= nu, nu *= 2, and the step is solved again, up to ``stages.max_evals``
tries; then the point is kept. So every rank takes the same branches, and the loss never
increases.

With ``coupling = "global"`` the interface coupling is kept: the step solves the
Gauss-Newton system of the whole objective by CG with the block-Jacobi matrices as
preconditioner, and the model's curvature is the coupled one
(:mod:`ddpinn.training.gn_coupling`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ddpinn.nn.batched import bmm
from ddpinn.parallel.reduce import reproducible_sum
from ddpinn.training.gn_blocks import _own, damped_solve, expert_blocks, matvec
from ddpinn.training.gn_coupling import (Coupling, Preconditioner, _owned, check_global,
                                         global_model, global_solve)
from ddpinn.training.jacobian import jacobian
from ddpinn.training.lsq import (per_point_copy, per_point_rows, problem_layout,
                                 residual_blocks, residual_form_missing)
from ddpinn.training.optimizers import OptimizerAdapter, register_optimizer


LAMBDA_MAX = 1e20  # damping cap: beyond it a step is too small to matter
LAMBDA_MIN = 1e-14  # damping floor, far below the scales of the Gram matrices


class LMCore:
    """The Levenberg-Marquardt iteration over block-diagonal least squares.

    Subclasses provide :meth:`residuals_and_jacobian`, :meth:`get` and :meth:`put`; the
    global sums go through ``comm`` with :func:`reproducible_sum` over ``n_total`` items.

    Parameters
    ----------
    comm : Comm or SerialComm
    n_total : int, experts over all ranks
    n_shared : int, shared unknowns (the last columns of the Jacobian)
    lam : float, initial damping
    max_tries : int, solves with growing damping per step before giving up the step
    scale : float, the step is ``scale`` times the LM step (the stage's lr, halved at
        divergence rollbacks)
    """

    def __init__(self, comm, n_total, n_shared=0, lam=1e-3, max_tries=25, scale=1.0):
        self.comm, self.n_total, self.n_shared = comm, int(n_total), int(n_shared)
        self.lam, self.nu = float(lam), 2.0
        self.max_tries, self.scale = int(max_tries), float(scale)
        self.current = None  # (loss, metrics) at the current point, None: evaluate
        self.last = {}  # diagnostics of the last step
        # coupled step (gn_coupling): a Coupling, and (max CG iterations, tolerance)
        self.coupling, self.cg_settings, self.cg_last = None, None, {}
        self.preconditioner = Preconditioner()

    def residuals_and_jacobian(self):
        """Collective. r (E, M) and J (E, M, P + n_shared) at the current point."""
        raise NotImplementedError

    def get(self):
        """The current point: ``(dist (E, P), shared (n_shared,))``."""
        raise NotImplementedError

    def put(self, dist, shared) -> None:
        """Set the point (inverse of :meth:`get`)."""
        raise NotImplementedError

    # -- one step ----------------------------------------------------------------------
    def step(self, closure):
        """Collective. One LM step; returns ``(loss, metrics)`` at the new (or kept) point."""
        if self.current is None:
            self.current = closure()
        loss0, metrics0 = self.current
        if not math.isfinite(loss0):
            return loss0, metrics0  # recorded by the caller: a divergence rollback
        r, J = self.residuals_and_jacobian()
        if self.coupling is None:
            gram, space = expert_blocks(J[..., :J.shape[-1] - self.n_shared])
        else:  # the coupled step's preconditioner keeps its own
            gram, space = None, None
            self.preconditioner.begin_step(_owned(self, J), J.shape)
        dist0, shared0 = self.get()
        tries = 0
        while tries < self.max_tries:
            tries += 1
            d, ds = self.solve(J, r, gram, space)
            d, ds = self.scale * d, self.scale * ds
            model = self._model_terms(J, r, d, ds)
            if not math.isfinite(model[0]) or not math.isfinite(model[1]):
                found = None  # a failed factorisation somewhere: more damping
            elif model[0] >= 0:  # no descent along the step: a stationary point
                self.last = {"gn_lambda": self.lam, "gn_ratio": 0.0, "gn_alpha": 0.0,
                             "gn_tries": tries}
                return loss0, {**metrics0, **self.last}
            else:
                found = self._line_search(closure, loss0, model, dist0, d, shared0, ds)
            if found is not None:
                return self._accept(found, tries)
            self.lam = min(self.lam * self.nu, LAMBDA_MAX)
            self.nu *= 2.0
        # No step accepted: stay (the gradients and metrics of the start point again).
        self.put(dist0, shared0)
        self.current = closure()
        self.last = {"gn_lambda": self.lam, "gn_ratio": 0.0, "gn_alpha": 0.0,
                     "gn_tries": tries}
        return self.current[0], {**self.current[1], **self.last}

    def solve(self, J, r, gram, space):
        """Collective when there are shared unknowns. The damped Gauss-Newton step of the
        experts (E, P) and of the shared unknowns (k,).

        The experts' blocks are independent (block Jacobi over the interfaces), but shared
        unknowns couple every expert: the system is an arrow, [A_e, C_e; C_e^T, S] with
        A_e = J_e^T J_e + lam I, C_e = J_e^T J_se, S = sum_e J_se^T J_se + lam I, solved
        exactly through the Schur complement S - sum_e C_e^T A_e^-1 C_e (k x k), whose
        per-expert terms are summed exactly (:func:`reproducible_sum`). With a coupling,
        the coupled step instead (:func:`~ddpinn.training.gn_coupling.global_solve`)."""
        if self.coupling is not None:
            return global_solve(self, J, r)
        k = self.n_shared
        P = J.shape[-1] - k
        Jd, Js = J[..., :P], J[..., P:]
        Y = torch.cat([r[..., None], Js], -1)  # (E, M, 1 + k)
        Z = damped_solve(Jd, gram, space, Y, self.lam)  # A_e^-1 J_e^T [r_e, J_se]
        if not k:
            d = -torch.cat(Z)[..., 0] if Z else Jd.new_zeros(0, P, dtype=torch.float64)
            return d, J.new_zeros(0, dtype=torch.float64)  # on the parameters' device
        per = torch.zeros(len(Z), k * k + k, dtype=torch.float64)
        for e, z in enumerate(Z):
            Jse, Ye = _own(Js, e), _own(Y, e)
            JZ = bmm(_own(Jd, e), z)  # (1, M, 1 + k)
            JsT = Jse.transpose(1, 2)
            schur = bmm(JsT, Jse) - bmm(JsT, JZ[..., 1:])  # (1, k, k)
            rhs = bmm(JsT, Ye[..., :1]) - bmm(JsT, JZ[..., :1])  # (1, k, 1)
            per[e] = torch.cat([schur.flatten(), rhs.flatten()])
        tot = reproducible_sum(self.comm, per.numpy(), self.n_total)
        S = tot[:k * k].reshape(k, k) + self.lam * np.eye(k)
        try:  # S is the same on every rank: all take the same branch
            ds = -np.linalg.solve(S, tot[k * k:])
        except np.linalg.LinAlgError:
            ds = np.full(k, math.nan)
        ds_t = torch.as_tensor(ds, dtype=torch.float64, device=J.device)
        d = [-(z[..., 0] + (z[..., 1:] * ds_t).sum(-1)) for z in Z]
        d = torch.cat(d) if d else Jd.new_zeros(0, P, dtype=torch.float64)
        return d, ds_t

    def _model_terms(self, J, r, d, ds) -> tuple:
        """Collective. ``(slope, curvature)`` of the block model along the step (d, ds),
        global: m(alpha) = -(alpha * slope + alpha^2 * curvature) is its predicted decrease,
        with slope = sum_e 2 r_e . J_e [d_e, ds] (the exact directional derivative of the
        objective) and curvature = sum_e |J_e [d_e, ds]|^2 (interface coupling left out;
        with a coupling, the coupled one: :func:`~ddpinn.training.gn_coupling.global_model`)."""
        if self.coupling is not None:
            return global_model(self, J, r, d)
        step = torch.cat([d, ds.to(d).expand(len(d), -1)], 1)
        per = torch.zeros(len(d), 2, dtype=torch.float64)
        for e in range(len(d)):
            Jdd = matvec(_own(J, e), _own(step, e))  # (1, M)
            per[e, 0] = 2 * (_own(r, e) * Jdd).sum()
            per[e, 1] = (Jdd * Jdd).sum()
        tot = reproducible_sum(self.comm, per.numpy(), self.n_total)
        return float(tot[0]), float(tot[1])

    def _try(self, closure, alpha, dist0, d, shared0, ds):
        """Collective. The objective at the start point plus ``alpha`` times the step."""
        self.put(dist0 + alpha * d, shared0 + alpha * ds)
        return closure()

    def _line_search(self, closure, loss0, model, dist0, d, shared0, ds):
        """Collective. The full step, then the minimiser of the parabola through the start
        point (value and exact slope) and the full step's value: block Jacobi tends to
        overshoot at the interfaces (both sides move toward each other's old values), and
        this step length corrects for it. Returns ``(alpha, loss, metrics, ratio, rho)``
        (``ratio``: actual over predicted decrease at the full step, ``rho``: at alpha) of the
        better point if it decreases the objective, else None (the parameters are then
        undefined)."""
        slope, curv = model
        loss1, metrics1 = self._try(closure, 1.0, dist0, d, shared0, ds)
        ratio = (loss0 - loss1) / -(slope + curv)  # actual / block-predicted, full step
        if not math.isfinite(loss1):
            loss1, alpha = math.inf, 0.25
        else:
            c = loss1 - loss0 - slope  # curvature of the parabola through both points
            alpha = min(max(-slope / (2 * c), 0.05), 2.0) if c > 0 else 1.0
        if abs(alpha - 1.0) > 0.1:
            loss_a, metrics_a = self._try(closure, alpha, dist0, d, shared0, ds)
            if math.isfinite(loss_a) and loss_a < min(loss1, loss0):
                pred = -(alpha * slope + alpha * alpha * curv)
                return alpha, loss_a, metrics_a, ratio, (loss0 - loss_a) / pred
            if not loss1 < loss0:
                return None
            # The full step was the better one: back to it (its metrics and gradients).
            loss1, metrics1 = self._try(closure, 1.0, dist0, d, shared0, ds)
        return (1.0, loss1, metrics1, ratio, ratio) if loss1 < loss0 else None

    def _accept(self, found, tries):
        alpha, loss1, metrics1, ratio, rho = found
        # Nielsen's update from the model's quality at the full step: where block Jacobi
        # overshoots (both sides of an interface jump toward each other's old values) the
        # ratio falls and lambda rises, which damps the jumps; the line search takes care
        # of a step that is merely too long. (The ratio at the shorter step is near 1 even
        # for a poor direction, and lambda would then fall into ever worse overshoots.)
        rho = min(max(ratio, 0.0), 1.0)
        self.lam = min(max(self.lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3),
                           LAMBDA_MIN), LAMBDA_MAX)
        self.nu = 2.0
        self.current = (loss1, metrics1)
        self.last = {"gn_lambda": self.lam, "gn_ratio": ratio, "gn_alpha": alpha,
                     "gn_tries": tries}
        return loss1, {**metrics1, **self.last}


class LevenbergMarquardt(LMCore):
    """LM over a :class:`~ddpinn.training.solver.Solver`'s experts and shared unknowns
    (the other parameters as in :class:`LMCore`)."""

    def __init__(self, solver, lam=1e-3, max_tries=25, scale=1.0):
        super().__init__(solver.layout.peer_comm,
                         solver.decomposition.n_subdomains * solver.layout.replicas,
                         len(solver.shared), lam, max_tries, scale)
        self.solver = solver
        self.layout = problem_layout(solver.problem)

    def residuals_and_jacobian(self):
        """Collective (neighbour exchange). r (E, M) and J (E, M, P + n_shared)."""
        self._owned_of = self._owned = None  # the last step's copies of J (gn_coupling)
        s = self.solver
        n_local = s.model.n_experts
        N = per_point_rows(s.batch.x.shape[1])
        leaves = {n: p.detach().reshape(1, 1).expand(n_local, 1).clone().requires_grad_(True)
                  for n, p in s.shared.items()}
        params = {**s.pde.params, **leaves}
        rep, rparams, rleaves = per_point_copy(s.model, params, N)
        r, points = residual_blocks(
            s.model, s.pde, params, s.batch, s.plan, s.layout.peer_comm, s.conditions,
            s.problem.condition_weights, s.cfg.loss, s.quantities,
            derivatives=s.cfg.network.derivatives, causal=s.active_causal,
            residual_weights=s.problem.residual_weights, per_point=(rep, rparams),
            layout=self.layout)
        J = jacobian(r, points, rleaves, N)
        if self.cg_settings is not None:  # the plan changes with the points
            self.coupling = Coupling.of(s, self.layout)
        return r.detach(), J

    def get(self):
        s = self.solver
        E = s.model.n_experts
        dist = torch.cat([p.detach().reshape(E, -1) for p in s.model.parameters()], 1)
        shared = torch.stack([p.detach().reshape(()) for p in s.shared.values()]) \
            if len(s.shared) else dist.new_zeros(0)
        return dist, shared

    def put(self, dist, shared):
        s = self.solver
        E = s.model.n_experts
        with torch.no_grad():
            off = 0
            for p in s.model.parameters():
                n = p[0].numel() if E else 0
                p.copy_(dist[:, off:off + n].reshape(p.shape).to(p.dtype))
                off += n
            for i, p in enumerate(s.shared.values()):
                p.copy_(shared[i].to(p.dtype))


@register_optimizer("gauss_newton")
class GaussNewton(OptimizerAdapter):
    """:class:`LevenbergMarquardt`: a Jacobian and a few loss evaluations per step; the step
    is recorded at the accepted point, after the update, with the metrics ``gn_lambda``,
    ``gn_ratio`` (actual over block-predicted decrease of the full step), ``gn_alpha`` (the
    step length taken) and ``gn_tries``. The step is the stage's ``lr`` (default 1) times
    the LM step; schedules do not apply. Stage fields: ``damping`` (initial lambda),
    ``max_evals`` (tries per step), ``coupling`` ("block", or "global": the coupled step of
    :mod:`ddpinn.training.gn_coupling`, with ``cg_iterations`` and ``cg_tolerance``; it
    logs ``gn_cg_iterations`` and ``gn_cg_residual``, and ``gn_ratio`` is then over the
    coupled model's predicted decrease)."""

    default_lr = 1.0

    def __init__(self, solver, stage, lr):
        super().__init__(solver, stage, lr)
        self.opt = LevenbergMarquardt(solver, lam=stage.damping, max_tries=stage.max_evals,
                                      scale=lr)
        if stage.coupling == "global":
            self.opt.cg_settings = (stage.cg_iterations, stage.cg_tolerance)
            self.opt.preconditioner = Preconditioner(stage.precondition_every)

    def step(self, closure, record):
        loss, metrics = self.opt.step(closure)
        metrics = {**metrics, **self.opt.cg_last}
        record(loss, metrics)
        return loss, metrics

    def set_lr(self, lr):
        """No-op: the step scale stays the one the stage began with."""

    def objective_changed(self):
        self.opt.current = None
        self.opt.preconditioner.drop()

    def state(self, named_dist, named_shared):
        return {}, {}, {"gn_lambda": self.opt.lam, "gn_nu": self.opt.nu,
                        "gn_preconditioner_steps": self.opt.preconditioner.steps}

    def load_state(self, dist, shared, scalars, named_dist, named_shared):
        if "gn_lambda" in scalars:
            self.opt.lam, self.opt.nu = float(scalars["gn_lambda"]), float(scalars["gn_nu"])
        # The kept Gram matrices are not in the checkpoint: rebuilt at the next step, which
        # is where the uninterrupted run rebuilds them when the count is a multiple of
        # precondition_every.
        self.opt.preconditioner.steps = int(scalars.get("gn_preconditioner_steps", 0))
        self.opt.preconditioner.drop()
        self.opt.current = None

    @classmethod
    def check_case(cls, stage, conditions, cfg, where: str) -> None:
        missing = residual_form_missing(conditions)
        if missing:
            raise ValueError(f"field '{where}.optimizer' = {stage.optimizer!r} needs interface "
                             f"conditions in residual form, but {missing[0]!r} gives a penalty "
                             f"only (register it with @condition(..., residual=True) and "
                             f"return the (S, n, c) difference), or use adam/lbfgs")
        if cfg.parallel.replicas > 1:
            raise ValueError(f"field '{where}.optimizer' = {stage.optimizer!r} does not run "
                             f"with parallel.replicas = {cfg.parallel.replicas}: use 1")
        check_global(stage, conditions, cfg, where)

    @classmethod
    def memory_bytes(cls, stage, params, largest_param, rows=0.0, experts=1):
        """J (E, M, P) in the dtype and in float64, per-point copies of the parameters
        (E N P), and the normal matrix (E, min(M, P)^2) with its Cholesky factor, float64;
        with ``precondition_every`` > 1 the kept Gram matrices (and J, in sample space).
        ``rows``: residual rows M per expert times E (0: unknown, the parameters only);
        ``experts``: E."""
        if not rows:
            return 4.0 * params
        return float(stage_bytes(params / max(int(experts), 1), rows,
                                 kept=stage.precondition_every > 1))


def stage_bytes(row_bytes: float, rows: float, kept: bool = False) -> float:
    """Bytes of one Gauss-Newton step (see :meth:`GaussNewton.memory_bytes`).

    row_bytes : bytes of one expert's parameters (P itemsize), those of one row of J;
    rows : E M, the rows over a rank's experts; kept : a kept preconditioner."""
    jac = rows * row_bytes * 2  # J, and its float64 copy (at most twice)
    copies = rows * row_bytes  # the per-point copies and their gradients, about E N P
    normal = 2 * rows * row_bytes  # min(M, P)^2 <= M P: gram and factor
    return jac + copies + normal * (2 if kept else 1)

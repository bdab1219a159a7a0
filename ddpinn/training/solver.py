"""The solver of one rank: its three parts, put together.

- :class:`~ddpinn.training.ownership.Ownership`: where the rank sits (replica layout,
  communicators, allreduce backend) and which subdomains it holds (owner map, sids);
- :class:`~ddpinn.training.experts.Experts`: the batched networks of those subdomains and
  the shared unknowns, with prediction at global points;
- :class:`~ddpinn.training.context.StepContext`: the points of the current epoch, their
  interface plan, the active conditions, the causal weights and the step's settings, which
  the :class:`~ddpinn.training.context.Closure` evaluates.

The communicator is given (never created here). With ``parallel.replicas = R`` the partition
maps subdomains to groups of R ranks; each replica of a group holds the group's experts and a
share of their points, and the group's gradients are summed over the replicas
(:mod:`ddpinn.parallel.replicas`).

An optimizer adapter uses ``model``, ``shared``, ``layout.peer_comm``, ``decomposition``,
``parameters()`` and ``closure()`` (``docs/plugins.md``); ``closure`` is the
:class:`~ddpinn.training.context.Closure` itself, so a step calls straight into it.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ddpinn.training.causal import CausalWeights
from ddpinn.training.context import (Closure, MetricMeans, StepContext, StepSettings,
                                     draw_points)
from ddpinn.training.experts import DTYPES, Experts, make_experts  # noqa: F401  (public here too)
from ddpinn.training.memory import LARGE_SETUP
from ddpinn.data.observations import read_observations
from ddpinn.training.ownership import Ownership
from ddpinn.training.precision import first_dtype
from ddpinn.training.resampling import r3_points

log = logging.getLogger("ddpinn")


class Solver:
    """Local experts of ``comm.rank`` for a :class:`~ddpinn.problem.Problem`.

    Parameters
    ----------
    problem : Problem
    comm : Comm or SerialComm
    device : torch.device

    Attributes
    ----------
    ownership : Ownership
    experts : Experts
    closure : Closure, collective when called: ``() -> (loss, metrics)``; its ``ctx`` is the
        current StepContext
    causal : CausalWeights or None, the case's causal weights (also in stages without them)
    epoch : int, the sampling epoch of the current points
    setup_seconds : dict, wall seconds of each set-up phase on this rank (points and plan:
        the latest draw)
    """

    def __init__(self, problem, comm, device=torch.device("cpu")):
        cfg = problem.cfg
        self.problem, self.cfg, self.comm, self.device = problem, cfg, comm, device
        dtype = DTYPES[first_dtype(cfg)]  # later stages may convert it (precision.py)
        self.setup_seconds = {}
        t0 = time.perf_counter()
        self.ownership = Ownership.build(comm, problem.decomposition, cfg.parallel.replicas,
                                         cfg.parallel.backend, problem.work)
        t1 = time.perf_counter()
        # A large set-up says what it is doing (rank 0 logs INFO), so a long one is not silent.
        self._announce = len(self.sids) > LARGE_SETUP
        self._phase(f"partition done in {t1 - t0:.1f} s; building {len(self.sids)} experts")
        self.experts = Experts(problem, self.ownership, dtype, device)
        self.setup_seconds.update(partition=t1 - t0, experts=time.perf_counter() - t1)
        self._phase(f"experts built in {self.setup_seconds['experts']:.1f} s; drawing points")
        self.causal = CausalWeights(
            cfg.causal, cfg.domain.time, problem.time_axis, comm,
            self.decomposition.n_subdomains) if cfg.causal.chunks else None
        self.closure = Closure(self.experts, self.ownership, None,
                               MetricMeans.of(self.decomposition, problem.time_axis,
                                               problem.shape_counts),
                               self.causal)
        self._conditions, self._use_causal = problem.conditions, True
        # Observation files: this rank reads its experts' parts once (collective).
        self.observations = read_observations(problem, self.sids, self.ownership.comm,
                                              cfg.case.seed)
        if self.observations is not None:
            problem.observation_counts = self.observations.counts
        self.epoch = -1
        self.resample(0)
        self._phase(f"points drawn in {self.setup_seconds['points']:.1f} s, interface plan "
                    f"in {self.setup_seconds['interface_plan']:.1f} s")
        self._announce = False

    def _phase(self, text: str) -> None:
        if self._announce:
            log.info("set-up of %d subdomains on this rank: %s", len(self.sids), text)

    # -- the parts, by the names the trainer, the evaluation and optimizer adapters use ----
    pde = property(lambda self: self.problem.pde)
    decomposition = property(lambda self: self.problem.decomposition)
    layout = property(lambda self: self.ownership.layout)
    backend = property(lambda self: self.ownership.backend)
    owner = property(lambda self: self.ownership.owner)
    sids = property(lambda self: self.ownership.sids)
    # Settable: a test or a tool may evaluate another model through predict and the closure.
    model = property(lambda self: self.experts.model,
                     lambda self, model: setattr(self.experts, "model", model))
    shared = property(lambda self: self.experts.shared)
    # One precision, the experts': points are drawn and predictions made in it.
    dtype = property(lambda self: self.experts.dtype,
                     lambda self, dtype: setattr(self.experts, "dtype", dtype))
    ctx = property(lambda self: self.closure.ctx)
    batch = property(lambda self: self.ctx.batch)
    plan = property(lambda self: self.ctx.plan)
    conditions = property(lambda self: self.ctx.conditions)
    quantities = property(lambda self: self.ctx.quantities)

    def parameters(self) -> list:
        return self.experts.parameters()

    def zero_grad(self) -> None:
        self.experts.zero_grad()

    def predict(self, points: np.ndarray, chunk: int = 8192, values=None,
                n_values: int | None = None) -> np.ndarray | None:
        """Collective. :meth:`Experts.predict <ddpinn.training.experts.Experts.predict>`."""
        return self.experts.predict(points, chunk, values, n_values)

    def locate(self, points: np.ndarray) -> np.ndarray:
        return self.experts.locate(points)

    # -- the step context ------------------------------------------------------------------
    def set_conditions(self, conditions) -> None:
        """Active interface conditions (and hence what is computed and exchanged).

        conditions : ConditionSet, or a list of names for every interface
        """
        self._conditions = conditions
        self.closure.ctx = self.ctx.with_conditions(conditions)

    @property
    def use_causal(self) -> bool:
        """The stage's switch of the causal weights (StageSection.causal)."""
        return self._use_causal

    @use_causal.setter
    def use_causal(self, on: bool) -> None:
        self._use_causal = bool(on)
        self.closure.ctx = self.ctx.with_causal(self.active_causal)

    @property
    def active_causal(self):
        """The causal weights when the case has them and the current stage uses them."""
        return self.causal if self._use_causal else None

    def resample(self, epoch: int) -> bool:
        """Draw the points of ``epoch``; returns False (and does nothing) when already drawn."""
        if epoch == self.epoch:
            return False
        self.epoch = epoch
        batch, plan, seconds = draw_points(self.problem, self.ownership, epoch, self.dtype,
                                           self.device, self.observations)
        self.setup_seconds.update(seconds)
        self.closure.ctx = StepContext.of(
            self.pde, batch, plan, self.layout.peer_comm, self._conditions,
            StepSettings.of(self.problem), self.active_causal)
        self._points_changed()
        return True

    def _points_changed(self) -> None:
        if self.causal is not None:
            self.causal.assign(self.batch.x, self.batch.res_w)

    def interior_points(self) -> torch.Tensor:
        """Interior points of the local experts: (E, n_interior, d)."""
        return self.batch.x[:, :self.cfg.points.interior].detach()

    def set_interior(self, points: torch.Tensor) -> None:
        """Replace the interior points (E, n_interior, d), e.g. from a checkpoint."""
        with torch.no_grad():
            self.batch.x[:, :self.cfg.points.interior] = points.to(self.batch.x)
        self._points_changed()

    def residual_magnitude(self) -> np.ndarray:
        """|r| (norm over the equations) at every row of the current points: (E, N)."""
        return self.experts.residual_magnitude(self.batch.x, self.cfg.network.derivatives)

    def r3_update(self, step: int) -> bool:
        """Retain-resample-release of every local expert's interior points at ``step``
        (see :mod:`ddpinn.training.resampling`); returns True."""
        n = self.cfg.points.interior
        magnitude = self.residual_magnitude()[:, :n]
        current = self.interior_points().double().cpu().numpy()
        new = [r3_points(current[e], magnitude[e], self.decomposition.subdomains[sid].box,
                         self.cfg.case.seed, step, sid, self.cfg.points.sampling)
               for e, sid in enumerate(self.sids)]
        self.set_interior(torch.as_tensor(np.stack(new)))
        return True

    def begin_step(self) -> bool:
        """:meth:`Closure.begin_step <ddpinn.training.context.Closure.begin_step>`."""
        return self.closure.begin_step()

"""The solver of one rank: its experts, shared parameters, points and interface plan.

One :class:`Solver` per rank owns everything that rank computes with; the communicator is
given to it (never created here). With ``parallel.replicas = R`` the partition maps subdomains
to groups of R ranks; each replica of a group holds the group's experts and a share of their
points, and the group's gradients are summed over the replicas
(:mod:`ddpinn.parallel.replicas`).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from ddpinn.decomposition import owned_sids, partition
from ddpinn.decomposition.locate import locate
from ddpinn.interface import exchange
from ddpinn.interface.conditions import ConditionSet, needed_quantities
from ddpinn.nn.taylor import make_fields
from ddpinn.parallel.backends import make_backend
from ddpinn.parallel.reduce import reproducible_sum
from ddpinn.training.causal import CausalWeights
from ddpinn.training.experts import DTYPES, make_experts  # noqa: F401  (public here too)
from ddpinn.parallel.replicas import make_layout
from ddpinn.training.loss import local_loss
from ddpinn.training.memory import LARGE_SETUP
from ddpinn.training.points import build_points
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
    """

    def __init__(self, problem, comm, device=torch.device("cpu")):
        cfg = problem.cfg
        self.problem, self.cfg, self.comm, self.device = problem, cfg, comm, device
        self.pde = problem.pde
        self.decomposition = problem.decomposition
        self.dtype = DTYPES[first_dtype(cfg)]  # later stages may convert it (precision.py)
        # Wall seconds of each set-up phase on this rank (points and plan: the latest draw).
        self.setup_seconds = {}
        t0 = time.perf_counter()
        self.layout = make_layout(comm, cfg.parallel.replicas, self.decomposition.n_subdomains)
        self.owner = partition(self.decomposition.grid, self.layout.groups)  # sid -> group
        self.sids = owned_sids(self.owner, self.layout.group)
        t1 = time.perf_counter()
        # A large set-up says what it is doing (rank 0 logs INFO), so a long one is not silent.
        self._announce = len(self.sids) > LARGE_SETUP
        self._phase(f"partition done in {t1 - t0:.1f} s; building {len(self.sids)} experts")
        self.model = make_experts(problem, self.sids, self.dtype, device).to(device)
        self.setup_seconds.update(partition=t1 - t0, experts=time.perf_counter() - t1)
        self._phase(f"experts built in {self.setup_seconds['experts']:.1f} s; drawing points")
        # Unknown coefficients of inverse problems: replicated on every rank.
        self.shared = nn.ParameterDict({
            n: nn.Parameter(torch.tensor(float(v), dtype=self.dtype, device=device))
            for n, v in sorted(cfg.pde.inverse.items())})
        self.backend = make_backend(cfg.parallel.backend, comm, self.layout)
        self.set_conditions(problem.conditions)
        self.causal = CausalWeights(
            cfg.causal, cfg.domain.time, problem.time_axis, comm,
            self.decomposition.n_subdomains) if cfg.causal.chunks else None
        self.use_causal = True  # the stage's switch (StageSection.causal)
        self.epoch = -1
        self.resample(0)
        self._phase(f"points drawn in {self.setup_seconds['points']:.1f} s, interface plan "
                    f"in {self.setup_seconds['interface_plan']:.1f} s")
        self._announce = False

    def _phase(self, text: str) -> None:
        if self._announce:
            log.info("set-up of %d subdomains on this rank: %s", len(self.sids), text)

    def set_conditions(self, conditions) -> None:
        """Active interface conditions (and hence what is computed and exchanged).

        conditions : ConditionSet, or a list of names for every interface
        """
        self.conditions = ConditionSet.of(conditions)
        self.quantities = needed_quantities(self.conditions.names)

    # -- points --------------------------------------------------------------------------
    def resample(self, epoch: int) -> bool:
        """Draw the points of ``epoch``; returns False (and does nothing) when already drawn."""
        if epoch == self.epoch:
            return False
        self.epoch = epoch
        t0 = time.perf_counter()
        self.batch = build_points(self.decomposition, self.sids, self.pde, self.cfg.points,
                                  self.cfg.case.seed, self.pde.params, self.problem.time_axis,
                                  epoch, self.dtype, self.device, self.layout.replica,
                                  self.layout.replicas)
        # Interface partners are the same replica of the neighbour's group (peer_comm rank =
        # group), holding the same share of the interface points.
        t1 = time.perf_counter()
        self.plan = exchange.InterfacePlan(self.batch.sides, self.sids, self.owner,
                                           self.layout.group, self.batch.n_interface,
                                           self.batch.x.shape[1], self.device)
        self.setup_seconds.update(points=t1 - t0, interface_plan=time.perf_counter() - t1)
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
        x = self.batch.x.detach().requires_grad_(True)
        fields = make_fields(self.model, x, self.pde.axes, self.pde.outputs,
                             self.cfg.network.derivatives)
        n_local = self.model.n_experts
        shared = {n: p.detach().reshape(1, 1).expand(n_local, 1)
                  for n, p in self.shared.items()}
        res = self.pde.residual(fields, {**self.pde.params, **shared})
        return res.detach().pow(2).sum(-1).sqrt().double().cpu().numpy()

    def r3_update(self, step: int) -> bool:
        """Retain-resample-release of every local expert's interior points at ``step``
        (see :mod:`ddpinn.training.resampling`); returns True."""
        n = self.cfg.points.interior
        magnitude = self.residual_magnitude()[:, :n]
        current = self.interior_points().double().cpu().numpy()
        new = [r3_points(current[e], magnitude[e], self.decomposition.subdomains[sid].box,
                         self.cfg.case.seed, step, sid) for e, sid in enumerate(self.sids)]
        self.set_interior(torch.as_tensor(np.stack(new)))
        return True

    def begin_step(self) -> bool:
        """Start of an optimizer step: causal weights are taken anew at its first evaluation.
        Returns True when the objective may change from the last step's (causal weights)."""
        if self.active_causal is None:
            return False
        self.causal.begin_step()
        return True

    @property
    def active_causal(self):
        """The causal weights when the case has them and the current stage uses them."""
        return self.causal if self.use_causal else None

    # -- loss ----------------------------------------------------------------------------
    def _backend_int_sum(self, ints: np.ndarray) -> np.ndarray:
        return self.backend.allreduce_sum_(torch.from_numpy(ints.copy())).numpy()

    def _group_int_sum(self, ints: np.ndarray) -> np.ndarray:
        return self.backend.group_sum_(torch.from_numpy(ints.copy())).numpy()

    def _sum_expert_grads_over_group(self) -> None:
        """Collective over the group. Each replica's expert gradients come from its share of
        the points; their sum is the gradient of the loss of all points. Summed exactly (in
        integers), so every replica gets the same bits and the experts stay identical."""
        params = list(self.model.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]).double().cpu().numpy()
        total = reproducible_sum(self.layout.group_comm, flat[None, :], self.layout.replicas,
                                 self._group_int_sum)
        total = torch.from_numpy(total)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = total[offset:offset + n].reshape(p.shape).to(p.dtype).to(p.device)
            offset += n

    def parameters(self):
        return list(self.model.parameters()) + list(self.shared.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def closure(self):
        """Collective. Global loss, gradients of local experts and summed shared gradients.

        Returns
        -------
        loss : float, the global objective (sum over all experts)
        metrics : dict name -> float, global sums (bitwise the same on any rank count)
        """
        # Compute time: the whole closure less the exchange waits and allreduces inside it.
        with self.comm.times.measure("compute"):
            return self._loss_and_gradients()

    def _loss_and_gradients(self):
        self.zero_grad()
        n_local = self.model.n_experts
        # Items summed over the world: every expert once per replica (bounds exact sums).
        n_total = self.decomposition.n_subdomains * self.layout.replicas
        # Each expert sees its own leaf copy of every shared unknown, shape (E, 1), so the
        # per-expert gradient contributions can be summed in a rank-independent way.
        leaves = {n: p.detach().reshape(1, 1).expand(n_local, 1).clone().requires_grad_(True)
                  for n, p in self.shared.items()}
        terms = local_loss(self.model, self.pde, {**self.pde.params, **leaves}, self.batch,
                           self.plan, self.layout.peer_comm, self.conditions,
                           self.problem.condition_weights, self.cfg.loss, self.quantities,
                           derivatives=self.cfg.network.derivatives, causal=self.active_causal,
                           compile=self.cfg.network.compile,
                           early_send=self.cfg.parallel.early_send,
                           residual_weights=self.problem.residual_weights)
        terms.total.backward()
        if self.layout.replicas > 1:
            self._sum_expert_grads_over_group()
        if leaves:
            per_expert = np.stack([
                leaf.grad.reshape(-1).double().cpu().numpy() if leaf.grad is not None
                else np.zeros(n_local) for leaf in leaves.values()], axis=1)
            # One fused allreduce (through the configured backend) for all shared gradients.
            grads = reproducible_sum(self.comm, per_expert, n_total, self._backend_int_sum)
            for p, g in zip(self.shared.values(), grads):
                p.grad = torch.tensor(g, dtype=p.dtype, device=p.device)
        keys = sorted(terms.metrics)
        per_expert = np.stack([terms.metrics[k] for k in keys], axis=1)  # (E, K)
        totals = reproducible_sum(self.comm, per_expert, n_total)
        metrics = dict(zip(keys, (float(v) for v in totals)))
        sides = 0.0
        for kind in ("space", "time"):
            n = metrics.pop(f"sides_{kind}")
            sides += n
            metrics[f"mismatch_{kind}"] = metrics[f"mismatch_{kind}"] / n if n else 0.0
        self._mean_terms(metrics, sides)
        for n, p in self.shared.items():
            metrics[f"param_{n}"] = float(p.detach())
        if self.causal is not None:  # 1.0: uniform weights (a stage without them)
            metrics["causal_weight_min"] = float(self.causal.weights.min()) \
                if self.use_causal else 1.0
            metrics["causal_epsilon"] = self.causal.epsilon
        return metrics["loss"], metrics

    def _mean_terms(self, metrics: dict, sides: float) -> None:
        """Loss terms as means that do not depend on the decomposition: ``residual`` and
        ``data`` over the subdomains, ``boundary`` over the subdomains with a boundary face,
        each ``if_*`` over the interface sides (each expert's term is already a mean over
        its points, all experts have the same counts). ``loss`` stays the objective, the
        sum over experts that the optimizer minimises."""
        if not hasattr(self, "_n_boundary_subdomains"):
            mask = self.decomposition.boundary_face_mask(self.problem.time_axis)
            self._n_boundary_subdomains = int(mask.reshape(len(mask), -1).any(-1).sum())
        n_sub = self.decomposition.n_subdomains
        for key, n in (("residual", n_sub), ("data", n_sub),
                       ("boundary", self._n_boundary_subdomains)):
            metrics[key] = metrics[key] / n if n else 0.0
        for key in metrics:
            if key.startswith("if_"):
                metrics[key] = metrics[key] / sides if sides else 0.0

    # -- evaluation ----------------------------------------------------------------------
    def locate(self, points: np.ndarray) -> np.ndarray:
        """Subdomain id of each point: (P, d) -> (P,); a point on an interface belongs to the
        subdomain on its upper side (:mod:`ddpinn.decomposition.locate`)."""
        return locate(points, self.decomposition)

    def predict(self, points: np.ndarray, chunk: int = 8192, values=None,
                n_values: int | None = None) -> np.ndarray | None:
        """Collective. Evaluate the experts at global points (P, d).

        Each rank evaluates the points inside its own subdomains; rank 0 receives the
        assembled (P, n_out) array, other ranks get None. ``values(model, x)`` maps a padded
        batch x (E, n, d) to (E, n, n_values) instead of the outputs (e.g. derivatives).
        """
        if values is None:
            values, n_values = _outputs, self.pde.n_out
        sid_of = self.locate(points)
        local = {s: e for e, s in enumerate(self.sids)}
        # Replicas hold identical experts: the first of each group answers.
        answering = self.sids if self.layout.replica == 0 else []
        mine = np.flatnonzero(np.isin(sid_of, answering))
        out = np.empty((len(mine), n_values))
        if len(mine):
            e_idx = np.array([local[s] for s in sid_of[mine]])
            counts = np.bincount(e_idx, minlength=len(self.sids))
            width = max(1, int(counts.max()))
            order = np.argsort(e_idx, kind="stable")
            # Padded batch (E, width, d): each expert evaluates only its own points.
            x = np.repeat(points[mine[order][:1]], len(self.sids) * width, 0).reshape(
                len(self.sids), width, -1)
            slot = np.concatenate([np.arange(c) for c in counts])
            x[e_idx[order], slot] = points[mine[order]]
            vals = []
            for i in range(0, width, chunk):
                xb = torch.as_tensor(x[:, i:i + chunk], dtype=self.dtype, device=self.device)
                vals.append(values(self.model, xb).detach().double().cpu().numpy())
            vals = np.concatenate(vals, axis=1)
            out[order] = vals[e_idx[order], slot]
        parts = self.comm.gather((mine, out))
        if self.comm.rank != 0:
            return None
        result = np.empty((len(points), n_values))
        for idx, vals in parts:
            result[idx] = vals
        return result


def _outputs(model, x):
    with torch.no_grad():
        return model(x)

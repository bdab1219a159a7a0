"""The step context and the closure: what one evaluation of the loss needs, and the
evaluation itself.

A :class:`StepContext` is built once per point epoch (new points: a new batch and interface
plan) and replaced by a copy when a stage changes the interface conditions or switches the
causal weights; :func:`ddpinn.training.loss.local_loss` reads all its inputs from it. The
:class:`Closure` is what an optimizer adapter calls: the loss of the rank's experts, its
backward pass, the exact sums over all experts of the shared gradients and of the metrics
(each one block, one host transfer) and the metrics as means.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ddpinn.interface.conditions import ConditionSet, needed_quantities
from ddpinn.interface.exchange import InterfacePlan
from ddpinn.io.config import LossSection
from ddpinn.parallel.reduce import reproducible_sum
from ddpinn.training.loss import local_loss
from ddpinn.training.points import PointBatch, build_points


@dataclass(frozen=True)
class StepSettings:
    """How the loss is computed; the case's choices, fixed for a run.

    weights : LossSection (residual, boundary, data); ``weights.residual`` is used when it
        is one number
    condition_weights : dict str -> float, weight of each interface condition (default 1)
    residual_weights : tuple of float (n_equations,) or None, a weight per equation of the
        residual (``Problem.residual_weights``) instead of ``weights.residual``
    derivatives : str, derivative engine ("taylor" or "autograd"; see
        :func:`ddpinn.nn.taylor.make_fields`)
    compile : bool, compiled Taylor sweep (not where the conditions need ``gres``: its
        gradient would be differentiated twice)
    early_send : bool, evaluate the rows from ``batch.interface_row`` on first and send
        their interface values while the other rows are evaluated (one more, smaller pass)
    """

    weights: LossSection = field(default_factory=LossSection)
    condition_weights: dict = field(default_factory=dict)
    residual_weights: tuple | None = None
    derivatives: str = "taylor"
    compile: bool = False
    early_send: bool = False

    @classmethod
    def of(cls, problem) -> "StepSettings":
        cfg = problem.cfg
        return cls(cfg.loss, problem.condition_weights, problem.residual_weights,
                   cfg.network.derivatives, cfg.network.compile, cfg.parallel.early_send)


@dataclass(frozen=True)
class StepContext:
    """The inputs of the loss of one rank's experts, besides the networks.

    pde : PDE
    batch : PointBatch, the points x (E, N, d) with their weights and targets
    plan : InterfacePlan of ``batch``'s interface sides
    comm : communicator of the interface exchange (the layout's ``peer_comm``)
    conditions : ConditionSet, the active interface conditions
    quantities : tuple of str, interface quantities they need (computed and exchanged)
    settings : StepSettings
    causal : CausalWeights or None, the causal weights when the stage uses them
    """

    pde: object
    batch: PointBatch
    plan: InterfacePlan
    comm: object
    conditions: ConditionSet
    quantities: tuple
    settings: StepSettings = field(default_factory=StepSettings)
    causal: object = None

    @classmethod
    def of(cls, pde, batch, plan, comm, conditions, settings=None, causal=None,
           quantities=None) -> "StepContext":
        """A context for ``conditions`` (a ConditionSet or a list of names), computing the
        quantities they need unless ``quantities`` are given."""
        conditions = ConditionSet.of(conditions)
        if quantities is None:
            quantities = needed_quantities(conditions.names)
        return cls(pde, batch, plan, comm, conditions, tuple(quantities),
                   settings or StepSettings(), causal)

    def with_conditions(self, conditions) -> "StepContext":
        """The same points with other active interface conditions."""
        conditions = ConditionSet.of(conditions)
        return dataclasses.replace(self, conditions=conditions,
                                   quantities=needed_quantities(conditions.names))

    def with_causal(self, causal) -> "StepContext":
        return dataclasses.replace(self, causal=causal)


def draw_points(problem, ownership, epoch: int, dtype, device, observations=None) -> tuple:
    """The points of ``epoch`` of this rank's experts (and their ``observations`` from
    files, :mod:`ddpinn.data.observations`), their interface plan, and the wall seconds of
    each: ``(batch, plan, {"points": s, "interface_plan": s})``."""
    cfg, layout = problem.cfg, ownership.layout
    t0 = time.perf_counter()
    if problem.shape is not None:
        from ddpinn.training.points_shape import build_shape_points

        batch = build_shape_points(problem, ownership.sids, cfg.case.seed, epoch, dtype, device)
    else:
        batch = build_points(problem.decomposition, ownership.sids, problem.pde, cfg.points,
                             cfg.case.seed, problem.pde.params, problem.time_axis, epoch, dtype,
                             device, layout.replica, layout.replicas)
    if observations is not None:
        from ddpinn.data.observations import append_observations

        batch = append_observations(batch, observations, ownership.sids)
    t1 = time.perf_counter()
    # Interface partners are the same replica of the neighbour's group (peer_comm rank =
    # group), holding the same share of the interface points.
    plan = InterfacePlan(batch.sides, ownership.sids, ownership.owner, layout.group,
                         batch.n_interface, batch.x.shape[1], device)
    return batch, plan, {"points": t1 - t0, "interface_plan": time.perf_counter() - t1}


@dataclass(frozen=True)
class MetricMeans:
    """Loss terms as means that do not depend on the decomposition: ``residual`` and
    ``data`` over the subdomains, ``boundary`` over the subdomains with a boundary face,
    each ``if_*`` over the interface sides, ``mismatch_*`` over the sides of its kind (each
    expert's term is already a mean over its points, all experts have the same counts).
    ``loss`` stays the objective, the sum over experts that the optimizer minimises.

    The means are taken of the exact global sums, after the one reduction: a division per
    expert before it would round differently."""

    n_subdomains: int
    n_boundary_subdomains: int

    @classmethod
    def of(cls, decomposition, time_axis, shape_counts=None) -> "MetricMeans":
        """``shape_counts``: the points of a cut decomposition (ShapeCounts), whose
        boundary subdomains are those with boundary-condition entries."""
        if shape_counts is not None:
            return cls(decomposition.n_subdomains, int((shape_counts.entries > 0).sum()))
        mask = decomposition.boundary_face_mask(time_axis)
        return cls(decomposition.n_subdomains,
                   int(mask.reshape(len(mask), -1).any(-1).sum()))

    def __call__(self, metrics: dict) -> None:
        """Sums -> means, in place; drops the side counts ``sides_*``."""
        sides = 0.0
        for kind in ("space", "time"):
            n = metrics.pop(f"sides_{kind}")
            sides += n
            metrics[f"mismatch_{kind}"] = metrics[f"mismatch_{kind}"] / n if n else 0.0
        for key, n in (("residual", self.n_subdomains), ("data", self.n_subdomains),
                       ("boundary", self.n_boundary_subdomains)):
            metrics[key] = metrics[key] / n if n else 0.0
        for key in metrics:
            if key.startswith("if_"):
                metrics[key] = metrics[key] / sides if sides else 0.0


def sum_over_experts(ownership, per_expert: torch.Tensor, int_sum=None) -> np.ndarray:
    """Collective. Exact sums over all experts of all ranks: (E, K) on the device ->
    (K,) float64, with one host transfer. ``int_sum``: the collective integer sum
    (default: the communicator's)."""
    values = per_expert.detach().double().cpu().numpy()
    return reproducible_sum(ownership.comm, values, ownership.n_items, int_sum)


def _through(backend_sum):
    """The collective int64 sum of :func:`reproducible_sum` done by a backend's in-place
    tensor sum (``allreduce_sum_`` or ``group_sum_``)."""
    return lambda ints: backend_sum(torch.from_numpy(ints.copy())).numpy()


def sum_grads_over_group(ownership, params: list) -> None:
    """Collective over the group. Each replica's expert gradients come from its share of
    the points; their sum is the gradient of the loss of all points. Summed exactly (in
    integers), so every replica gets the same bits and the experts stay identical."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]).double().cpu().numpy()
    total = reproducible_sum(ownership.layout.group_comm, flat[None, :],
                             ownership.layout.replicas, _through(ownership.backend.group_sum_))
    total = torch.from_numpy(total)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = total[offset:offset + n].reshape(p.shape).to(p.dtype).to(p.device)
        offset += n


class Closure:
    """Collective when called. The global loss, the gradients of the local experts and the
    summed shared gradients, at the current parameters.

    Parameters
    ----------
    experts : Experts
    ownership : Ownership
    ctx : StepContext, replaced (attribute ``ctx``) when points or conditions change
    means : MetricMeans
    causal : CausalWeights or None, the case's (reported also in stages without them)

    Calling it returns ``(loss, metrics)``: the objective (the sum over all experts) and a
    dict name -> float of global values, bitwise the same on any rank count.
    """

    def __init__(self, experts, ownership, ctx, means, causal=None):
        self.experts, self.ownership, self.ctx = experts, ownership, ctx
        self.means, self.causal = means, causal

    def begin_step(self) -> bool:
        """Start of an optimizer step: causal weights are taken anew at its first evaluation.
        Returns True when the objective may change from the last step's (causal weights)."""
        if self.ctx.causal is None:
            return False
        self.ctx.causal.begin_step()
        return True

    def __call__(self):
        # Compute time: the whole closure less the exchange waits and allreduces inside it.
        with self.ownership.comm.times.measure("compute"):
            return self._loss_and_gradients()

    def _loss_and_gradients(self):
        experts, own, ctx = self.experts, self.ownership, self.ctx
        experts.zero_grad()
        leaves = experts.shared_values(leaves=True)
        terms = local_loss(ctx, experts.model, {**ctx.pde.params, **leaves})
        terms.total.backward()
        if own.layout.replicas > 1:
            sum_grads_over_group(own, list(experts.model.parameters()))
        if leaves:
            self._sum_shared_grads(leaves)
        keys = sorted(terms.metrics)
        totals = sum_over_experts(own, torch.stack([terms.metrics[k] for k in keys], 1))
        metrics = dict(zip(keys, (float(v) for v in totals)))
        self.means(metrics)
        for n, p in experts.shared.items():
            metrics[f"param_{n}"] = float(p.detach())
        if self.causal is not None:  # 1.0: uniform weights (a stage without them)
            metrics["causal_weight_min"] = float(self.causal.weights.min()) \
                if ctx.causal is not None else 1.0
            metrics["causal_epsilon"] = self.causal.epsilon
        return metrics["loss"], metrics

    def _sum_shared_grads(self, leaves: dict) -> None:
        """One fused allreduce (through the configured backend) for all shared gradients;
        ``leaves`` name -> (E, 1), each expert's copy of a shared unknown."""
        shared = self.experts.shared
        per_expert = torch.stack([
            leaf.grad.reshape(-1) if leaf.grad is not None
            else torch.zeros(leaf.shape[0], dtype=leaf.dtype, device=leaf.device)
            for leaf in leaves.values()], 1)  # (E, n_shared)
        grads = sum_over_experts(self.ownership, per_expert,
                                 _through(self.ownership.backend.allreduce_sum_))
        for p, g in zip(shared.values(), grads):
            p.grad = torch.tensor(g, dtype=p.dtype, device=p.device)

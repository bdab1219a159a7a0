"""The loss of all local experts in one batched pass.

Per expert: weighted PDE residual + boundary/initial + data terms + the sum over its
interfaces of the weighted active conditions, with the other side's values detached.

The objective reported and minimised (the line search of L-BFGS evaluates it) is the sum over
experts in which a symmetric interface penalty P(a, b) = P(b, a), seen once from each side,
counts with weight 1/2: its gradient with respect to expert a is then exactly the detached
one-sided gradient that each expert computes. One-sided conditions count in full.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import CONDITIONS
from ddpinn.nn.batched import row_mean, row_sum
from ddpinn.nn.taylor_engine import make_fields
from ddpinn.training.boundary_loss import boundary_residual, output_gradients


@dataclass
class LossTerms:
    """Local loss and its parts.

    total : scalar Tensor, sum over local experts (differentiable); its gradient, with the
        other sides detached, is the gradient of the objective ``metrics["loss"]``
    metrics : dict name -> Tensor (E,), per local expert, detached, on the model's device
        (the caller reduces them all at once)
    """

    total: torch.Tensor
    metrics: dict


def local_loss(ctx, model, params) -> LossTerms:
    """Collective (neighbour exchange). Loss of this rank's experts.

    Parameters
    ----------
    ctx : StepContext (:mod:`ddpinn.training.context`): points ``ctx.batch`` x (E, N, d),
        interface plan, exchange communicator, active conditions and the quantities they
        need, causal weights and the step's settings (loss weights, derivative engine,
        compile, early_send)
    model : BatchedMLP with E experts
    params : dict, PDE parameters (inverse unknowns as tensors (E, 1))
    """
    plan = ctx.plan
    u, res, grad, mine, handle = _evaluate_and_post(ctx, model, params)
    per_res, per_bc, per_data, per_expert = _local_terms(ctx, u, res, grad)
    other = exchange.complete(plan, ctx.comm, mine, handle)
    metrics = {"residual": per_res.detach(), "boundary": per_bc.detach(),
               "data": per_data.detach()}
    per_expert = _interface_terms(ctx, mine, other, per_expert, metrics)
    total = per_expert.sum()
    return LossTerms(total, metrics)


def _evaluate_and_post(ctx, model, params):
    """Forward with derivatives at every row (a plain forward at the value-only rows),
    and the interface values posted to the neighbours: ``(u (E, N, m), res (E, N, q), grad, mine, handle)``; ``grad`` (E, N, m, d)
    the outputs' first derivatives when boundary conditions need them, else None."""
    batch, plan, comm, pde = ctx.batch, ctx.plan, ctx.comm, ctx.pde
    quantities, derivatives = ctx.quantities, ctx.settings.derivatives
    x = batch.x.detach().requires_grad_(True)
    compile = ctx.settings.compile and "gres" not in quantities
    split = batch.interface_row
    n_rows = x.shape[1] - batch.value_rows  # rows that need derivatives
    bc = batch.boundary_rows
    need_grad = bc is not None and bc.needs_gradient

    def gradients(fields):
        return output_gradients(fields, pde.n_out) if need_grad else None

    def evaluate(rows):
        # Without gres nothing differentiates the residual in x: a hard initial condition's
        # data may then be a constant kept per point set.
        fields = make_fields(model, x[:, rows], pde.axes, pde.outputs, derivatives,
                             compile=compile, constant_data="gres" not in quantities)
        return fields, pde.residual(fields, params)  # (E, n, q)

    if ctx.settings.early_send and 0 < split < n_rows:
        # The interface block first: its values are sent while the other rows are evaluated.
        tail, res_tail = evaluate(slice(split, n_rows))
        mine = exchange.interface_values(plan.from_row(split, batch.value_rows), tail,
                                         res_tail, pde, params, quantities)
        handle = exchange.post(plan, comm, mine)
        head, res_head = evaluate(slice(None, split))
        u = torch.cat([head.u, tail.u], dim=1)
        res = torch.cat([res_head, res_tail], dim=1)
        grad = torch.cat([gradients(head), gradients(tail)], dim=1) if need_grad else None
    else:
        fields, res = evaluate(slice(None, n_rows))
        u, grad = fields.u, gradients(fields)
        own_rows = plan.from_row(0, batch.value_rows) if batch.value_rows else plan
        mine = exchange.interface_values(own_rows, fields, res, pde, params, quantities)
        # Post early, complete late: the sends overlap with the local terms below.
        handle = exchange.post(plan, comm, mine)
    if batch.value_rows:
        u, res, grad = _with_value_rows(model, x[:, n_rows:], u, res, grad)
    return u, res, grad, mine, handle


def _with_value_rows(model, x_values, u, res, grad):
    """``u``, ``res`` and ``grad`` extended by the value-only rows ``x_values`` (E, K, d):
    their outputs from a plain forward pass; their residual and derivatives, which no term
    reads (their residual weight is 0, no boundary entry points at them), as zeros."""
    E, K = x_values.shape[:2]
    u_values = model(x_values.detach())  # (E, K, m)
    res = torch.cat([res, res.new_zeros(E, K, res.shape[-1])], dim=1)
    if grad is not None:
        grad = torch.cat([grad, grad.new_zeros(E, K, *grad.shape[2:])], dim=1)
    return torch.cat([u, u_values], dim=1), res, grad


def _local_terms(ctx, u, res, grad=None):
    """Residual, boundary and data terms per expert, each (E,): the unweighted residual
    (the "residual" metric), boundary, data and their weighted sum."""
    batch, pde, causal = ctx.batch, ctx.pde, ctx.causal
    weights, residual_weights = ctx.settings.weights, ctx.settings.residual_weights
    res_sq = res.pow(2).sum(-1)  # (E, N)
    per_res = row_sum(res_sq * batch.res_w, -1)  # (E,), unweighted (the "residual" metric)
    w_res = weights.residual
    if residual_weights is not None:
        if res.shape[-1] != len(residual_weights):
            raise ValueError(f"PDE {pde.name!r}: its residual has {res.shape[-1]} equations "
                             f"but 'loss.residual' gives {len(residual_weights)} weights")
        w_eq = torch.as_tensor(residual_weights, dtype=res.dtype, device=res.device)
        obj_sq, w_res = (res.pow(2) * w_eq).sum(-1), 1.0  # (E, N), weighted per equation
    else:
        obj_sq = res_sq
    if causal is not None:
        weighted_res = row_sum(obj_sq * (batch.res_w * causal(res_sq.detach())), -1)
    elif residual_weights is not None:
        weighted_res = row_sum(obj_sq * batch.res_w, -1)
    else:
        weighted_res = per_res
    if batch.boundary_rows is not None:
        bc = batch.boundary_rows
        per_bc = row_sum(boundary_residual(bc, u, grad).pow(2) * bc.w, (-1, -2))
    else:
        per_bc = row_sum((u - batch.bc_target).pow(2) * batch.bc_w, (-1, -2))
    per_data = row_sum((u - batch.data_target).pow(2) * batch.data_w, (-1, -2))
    per_expert = (w_res * weighted_res + weights.boundary * per_bc
                  + weights.data * per_data)
    return per_res, per_bc, per_data, per_expert


def _interface_terms(ctx, mine, other, per_expert, metrics):
    """``per_expert`` (E,) plus the weighted interface conditions of each expert's sides;
    adds the ``if_*``, ``mismatch_*``, ``sides_*`` and ``loss`` metrics (E,) in place."""
    plan, conditions, batch = ctx.plan, ctx.conditions, ctx.batch
    cond_weights = ctx.settings.condition_weights
    n_experts = per_expert.shape[0]

    def per_expert_sum(side_values):
        """(S,) per interface side -> (E,) per expert, in a fixed (e, iid) order."""
        out = torch.zeros(n_experts, dtype=side_values.dtype, device=side_values.device)
        return out.index_add(0, plan.expert, side_values) if plan.n_sides else out

    objective = per_expert.detach()
    penalties = exchange.condition_losses(conditions.names, mine, other, plan) \
        if plan.n_sides else {}
    for n, v in penalties.items():
        kinds = conditions.kinds(n)
        if len(kinds) == 1:  # a condition of one interface kind only (e.g. time interfaces)
            penalties[n] = v * plan.kind_mask[kinds[0]].to(v.dtype)
    # Conditions average over the points given; a replica holds a share of each interface's
    # points, so its means are weighted by that share and the replicas' terms add up.
    frac = batch.interface_fraction
    penalties = {n: v * frac for n, v in penalties.items()}
    if penalties:
        side_total = sum(cond_weights.get(n, 1.0) * v for n, v in penalties.items())
        per_expert = per_expert + per_expert_sum(side_total)
    for n in conditions.names:
        v = penalties[n].detach() if n in penalties else torch.zeros(
            plan.n_sides, dtype=objective.dtype, device=objective.device)
        metrics[f"if_{n}"] = per_expert_sum(v)
        half = 0.5 if CONDITIONS[n].symmetric else 1.0
        objective = objective + cond_weights.get(n, 1.0) * half * metrics[f"if_{n}"]
    mismatch = (row_mean((mine["u"] - other["u"]).detach().pow(2).sum(-1), -1)
                if plan.n_sides else torch.zeros(0, dtype=objective.dtype,
                                                 device=objective.device))
    for kind in ("space", "time"):
        sel = plan.kind_mask[kind].to(objective.dtype) * frac
        metrics[f"mismatch_{kind}"] = per_expert_sum(mismatch * sel)
        metrics[f"sides_{kind}"] = per_expert_sum(sel)
    metrics["loss"] = objective
    return per_expert

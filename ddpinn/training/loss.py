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
from ddpinn.interface.conditions import CONDITIONS, ConditionSet
from ddpinn.nn.batched import row_mean, row_sum
from ddpinn.nn.taylor import make_fields


@dataclass
class LossTerms:
    """Local loss and its parts.

    total : scalar Tensor, sum over local experts (differentiable); its gradient, with the
        other sides detached, is the gradient of the objective ``metrics["loss"]``
    metrics : dict name -> ndarray (E,), per local expert (the caller reduces them)
    """

    total: torch.Tensor
    metrics: dict


def local_loss(model, pde, params, batch, plan, comm, conditions, cond_weights, weights,
               quantities, derivatives="taylor", causal=None, compile=False,
               early_send=False, residual_weights=None) -> LossTerms:
    """Collective (neighbour exchange). Loss of this rank's experts.

    Parameters
    ----------
    model : BatchedMLP with E experts
    params : dict, PDE parameters (inverse unknowns as shared tensors)
    batch : PointBatch, x (E, N, d)
    plan : InterfacePlan
    conditions : ConditionSet (or a list for every interface), active interface conditions
    cond_weights : dict str -> float
    weights : LossSection (residual, boundary, data); ``weights.residual`` is used when it
        is one number
    quantities : tuple of str, interface quantities the conditions need
    derivatives : str, derivative engine ("taylor" or "autograd"; see
        :func:`ddpinn.nn.taylor.make_fields`)
    causal : CausalWeights or None; collective when given: squared residual per row (E, N)
        -> constant weights per row (E, N) of the residual term
    compile : bool, compiled Taylor sweep (not where the conditions need ``gres``: its
        gradient would be differentiated twice)
    early_send : bool, evaluate the rows from ``batch.interface_row`` on first and send
        their interface values while the other rows are evaluated (one more, smaller pass)
    residual_weights : sequence of float (n_equations,) or None, a weight per equation of
        the residual (``Problem.residual_weights``) instead of ``weights.residual``
    """
    conditions = ConditionSet.of(conditions)
    x = batch.x.detach().requires_grad_(True)
    compile = compile and "gres" not in quantities
    split = batch.interface_row

    def evaluate(rows):
        # Without gres nothing differentiates the residual in x: a hard initial condition's
        # data may then be a constant kept per point set.
        fields = make_fields(model, x[:, rows], pde.axes, pde.outputs, derivatives,
                             compile=compile, constant_data="gres" not in quantities)
        return fields, pde.residual(fields, params)  # (E, n, q)

    if early_send and 0 < split < x.shape[1]:
        # The interface block first: its values are sent while the other rows are evaluated.
        tail, res_tail = evaluate(slice(split, None))
        mine = exchange.interface_values(plan.from_row(split), tail, res_tail, pde, params,
                                         quantities)
        handle = exchange.post(plan, comm, mine)
        head, res_head = evaluate(slice(None, split))
        u = torch.cat([head.u, tail.u], dim=1)
        res = torch.cat([res_head, res_tail], dim=1)
    else:
        fields, res = evaluate(slice(None))
        u = fields.u
        mine = exchange.interface_values(plan, fields, res, pde, params, quantities)
        # Post early, complete late: the sends overlap with the local terms below.
        handle = exchange.post(plan, comm, mine)

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
    per_bc = row_sum((u - batch.bc_target).pow(2) * batch.bc_w, (-1, -2))
    per_data = row_sum((u - batch.data_target).pow(2) * batch.data_w, (-1, -2))
    per_expert = (w_res * weighted_res + weights.boundary * per_bc
                  + weights.data * per_data)

    other = exchange.complete(plan, comm, mine, handle)
    n_experts = per_expert.shape[0]

    def per_expert_sum(side_values):
        """(S,) per interface side -> (E,) per expert, in a fixed (e, iid) order."""
        out = torch.zeros(n_experts, dtype=side_values.dtype, device=side_values.device)
        return out.index_add(0, plan.expert, side_values) if plan.n_sides else out

    metrics = {"residual": per_res.detach(), "boundary": per_bc.detach(),
               "data": per_data.detach()}
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
        v = penalties[n].detach() if n in penalties else torch.zeros(plan.n_sides,
                                                                        dtype=objective.dtype)
        metrics[f"if_{n}"] = per_expert_sum(v)
        half = 0.5 if CONDITIONS[n].symmetric else 1.0
        objective = objective + cond_weights.get(n, 1.0) * half * metrics[f"if_{n}"]
    mismatch = (row_mean((mine["u"] - other["u"]).detach().pow(2).sum(-1), -1)
                if plan.n_sides else torch.zeros(0, dtype=objective.dtype))
    for kind in ("space", "time"):
        sel = plan.kind_mask[kind].to(objective.dtype) * frac
        metrics[f"mismatch_{kind}"] = per_expert_sum(mismatch * sel)
        metrics[f"sides_{kind}"] = per_expert_sum(sel)
    metrics["loss"] = objective
    total = per_expert.sum()
    metrics = {k: v.double().cpu().numpy() for k, v in metrics.items()}
    return LossTerms(total, metrics)

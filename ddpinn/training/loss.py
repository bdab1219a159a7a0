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
from ddpinn.nn import Fields


@dataclass
class LossTerms:
    """Local loss and its parts.

    total : scalar Tensor, sum over local experts (differentiable); its gradient, with the
        other sides detached, is the gradient of the objective ``metrics["loss"]``
    metrics : dict name -> float, local sums (reduce with a sum across ranks)
    """

    total: torch.Tensor
    metrics: dict


def local_loss(model, pde, params, batch, plan, comm, conditions, cond_weights, weights,
               quantities) -> LossTerms:
    """Collective (neighbour exchange). Loss of this rank's experts.

    Parameters
    ----------
    model : BatchedMLP with E experts
    params : dict, PDE parameters (inverse unknowns as shared tensors)
    batch : PointBatch, x (E, N, d)
    plan : InterfacePlan
    conditions : list of str, active interface conditions
    cond_weights : dict str -> float
    weights : LossSection (residual, boundary, data)
    quantities : tuple of str, interface quantities the conditions need
    """
    x = batch.x.detach().requires_grad_(True)
    u = model(x)
    fields = Fields(x, u, pde.axes, pde.outputs)
    res = pde.residual(fields, params)  # (E, N, q)

    mine = exchange.interface_values(plan, fields, res, pde, params, quantities)
    # Post early, complete late: the sends overlap with the local terms below.
    handle = exchange.post(plan, comm, mine)

    per_res = (res.pow(2).sum(-1) * batch.res_w).sum(-1)  # (E,)
    per_bc = ((u - batch.bc_target).pow(2) * batch.bc_w).sum((-1, -2))
    per_data = ((u - batch.data_target).pow(2) * batch.data_w).sum((-1, -2))
    per_expert = weights.residual * per_res + weights.boundary * per_bc + weights.data * per_data

    other = exchange.complete(plan, comm, mine, handle)
    metrics = {"residual": per_res.sum().item(), "boundary": per_bc.sum().item(),
               "data": per_data.sum().item()}
    objective = per_expert.detach().sum()
    if plan.n_sides:
        penalties = exchange.condition_losses(conditions, mine, other)
        side_total = sum(cond_weights.get(n, 1.0) * v for n, v in penalties.items())
        per_expert = per_expert.index_add(0, plan.expert, side_total)
        objective = objective + sum(
            cond_weights.get(n, 1.0) * (0.5 if CONDITIONS[n].symmetric else 1.0) * v.detach().sum()
            for n, v in penalties.items())
        for n, v in penalties.items():
            metrics[f"if_{n}"] = v.sum().item()
        mismatch = (mine["u"] - other["u"]).detach().pow(2).sum(-1).mean(-1)
        for kind in ("space", "time"):
            sel = [s for s, k in enumerate(plan.kind) if k == kind]
            metrics[f"mismatch_{kind}"] = mismatch[sel].sum().item() if sel else 0.0
            metrics[f"sides_{kind}"] = float(len(sel))
    else:
        for n in conditions:
            metrics[f"if_{n}"] = 0.0
        for kind in ("space", "time"):
            metrics[f"mismatch_{kind}"] = 0.0
            metrics[f"sides_{kind}"] = 0.0
    total = per_expert.sum()
    metrics["loss"] = float(objective)
    return LossTerms(total, metrics)

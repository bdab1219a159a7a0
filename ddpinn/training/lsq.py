"""The per-expert loss as a sum of squares: residual blocks r_e with sum(r_e**2) = loss_e.

Each expert's loss (:func:`ddpinn.training.loss.local_loss`, the differentiable per-expert
term whose gradient the gradient optimizers follow) is a weighted sum of squares. Here the
weights are folded in as square roots, row by row:

==================  ================================================  ====================
block               rows                                              shape
==================  ================================================  ====================
PDE residual        sqrt(w_res * res_w * w_eq * causal) * res         (E, k_int * q)
boundary, data      sqrt(w_bc * bc_w) * (u - bc_target), likewise      (E, 2 (N - k_int) m)
interface           sqrt(w_c * frac / n) * residual of condition c,   (E, 2 d * n * c)
                    one slot per (axis, side) of the subdomain
==================  ================================================  ====================

The row layout is a function of the expert's sid only (interior rows first, the boundary and
data rows over the padded rows that follow them, one interface slot per face of the
subdomain, zero rows where a face has no interface), never of the rank's other experts, so a
least-squares optimizer does the same arithmetic for an expert on any rank count.

Only conditions with a residual form (:mod:`ddpinn.interface.conditions`) can be written so;
:func:`residual_form_missing` names the others.
"""
from __future__ import annotations

import copy

import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import CONDITIONS, ConditionSet
from ddpinn.nn.taylor import make_fields


def residual_form_missing(conditions) -> list:
    """Names of the conditions in ``conditions`` that give a penalty only."""
    return [n for n in ConditionSet.of(conditions).names if CONDITIONS[n].residual is None]


def residual_blocks(model, pde, params, batch, plan, comm, conditions, cond_weights, weights,
                    quantities, derivatives="taylor", causal=None,
                    residual_weights=None, per_point=None) -> torch.Tensor:
    """Collective (neighbour exchange). Residual rows of this rank's experts: (E, M).

    The arguments are those of :func:`~ddpinn.training.loss.local_loss`. ``sum(r**2, -1)``
    is its per-expert loss (to rounding); the other side's interface values are detached.

    ``per_point``: optional ``(model, params)`` from :func:`per_point_copy`, evaluated
    instead, one point per copy; the rows are then the same functions of the copies'
    parameters, so a backward pass gives each point's own gradient.
    """
    conditions = ConditionSet.of(conditions)
    E, N, d = batch.x.shape
    x = batch.x.detach().requires_grad_(True)
    if per_point is not None:
        model, params = per_point
        x = x.reshape(E * N, 1, d)  # row e * N + n, the flat row order of the plan
    fields = make_fields(model, x, pde.axes, pde.outputs, derivatives,
                         constant_data="gres" not in quantities)
    res_flat = pde.residual(fields, params)  # (E, N, q), or (E N, 1, q) per point
    mine = exchange.interface_values(plan, fields, res_flat, pde, params, quantities)
    handle = exchange.post(plan, comm, mine)
    res = res_flat.reshape(E, N, -1)
    blocks = [_pde_rows(res, batch, weights, causal, residual_weights)]
    k_int = _interior_rows(batch)
    u = fields.u.reshape(E, N, -1)[:, k_int:]  # (E, N - k_int, m)
    for w, target, scale in ((batch.bc_w, batch.bc_target, weights.boundary),
                             (batch.data_w, batch.data_target, weights.data)):
        if not bool(w.any()):  # e.g. no data points: every expert's block would be zero
            continue
        w = w[:, k_int:]
        blocks.append(((u - target[:, k_int:]) * (scale * w).sqrt()).flatten(1))
    other = exchange.complete(plan, comm, mine, handle)
    rows, widths = _interface_rows(plan, mine, other, conditions, cond_weights,
                                   batch.interface_fraction, E, d)
    blocks.append(rows)
    r = torch.cat(blocks, dim=1)
    if per_point is not None:
        return r, _row_points(blocks, widths, batch, plan, k_int)
    return r


def _row_points(blocks, widths, batch, plan, k_int) -> torch.Tensor:
    """The point (row of the batch) each residual row depends on: (E, M) long.

    Mirrors the layout of :func:`residual_blocks`; rows of empty interface slots (all
    zero, no point) are given -1."""
    E, N = batch.x.shape[:2]
    cols = [torch.arange(k_int).repeat_interleave(blocks[0].shape[1] // max(k_int, 1))
            .expand(E, -1)]
    for b in blocks[1:-1]:
        cols.append(torch.arange(k_int, N).repeat_interleave(b.shape[1] // max(N - k_int, 1))
                    .expand(E, -1))
    if widths:
        point = plan.rows - plan.expert[:, None] * N  # (S, n), the sides' own rows
        side_rows = torch.cat([point.repeat_interleave(w, 1) for w in widths], dim=1)
        out = side_rows.new_full((E, 2 * batch.x.shape[-1], side_rows.shape[1]), -1)
        out = out.index_put((plan.expert, 2 * plan.axis + plan.downstream.long()), side_rows)
        cols.append(out.flatten(1))
    return torch.cat(cols, dim=1)


def per_point_copy(model, params: dict, n: int):
    """Every expert of ``model`` repeated ``n`` times (expert e's copies at e*n .. e*n+n-1),
    as new leaf tensors, and ``params`` with the (E, 1) leaves of shared unknowns repeated
    alike. Returns ``(copy, params, leaves)``, ``leaves`` the copied parameters (model's
    first, then the shared ones, in order), each (E n, ...)."""
    rep = copy.copy(model)
    rep._parameters, rep._buffers, rep._modules = {}, {}, {}
    for name, b in model._buffers.items():
        rep._buffers[name] = b.repeat_interleave(n, 0) if b is not None and b.dim() else b
    leaves = []
    for name, sub in model._modules.items():  # the ParameterLists
        new = torch.nn.ParameterList()
        for p in sub:
            new.append(torch.nn.Parameter(p.detach().repeat_interleave(n, 0)))
        rep._modules[name] = new
        leaves += list(new)
    rep.sids = [s for s in model.sids for _ in range(n)]
    if model.output_transform is not None:
        t = copy.copy(model.output_transform)
        t.first, t.slope = t.first.repeat_interleave(n, 0), t.slope.repeat_interleave(n, 0)
        t._cache = {}
        rep.output_transform = t
    params = dict(params)
    for name, v in list(params.items()):
        if isinstance(v, torch.Tensor) and v.requires_grad:
            params[name] = v.detach().repeat_interleave(n, 0).requires_grad_(True)
            leaves.append(params[name])
    return rep, params, leaves


def _interior_rows(batch) -> int:
    """Rows per expert that carry the PDE residual (the same for every expert)."""
    return int((batch.res_w[0] > 0).sum()) if batch.res_w.shape[0] else 0


def _pde_rows(res, batch, weights, causal, residual_weights) -> torch.Tensor:
    """sqrt-weighted PDE residual of the interior rows, (E, k_int * q)."""
    k = _interior_rows(batch)
    w = batch.res_w  # (E, N)
    if causal is not None:
        w = w * causal(res.detach().pow(2).sum(-1))
    if residual_weights is not None:
        w_eq = torch.as_tensor(residual_weights, dtype=res.dtype, device=res.device)
        w = w[..., None] * w_eq  # (E, N, q)
    else:
        w = (weights.residual * w)[..., None]
    return (res[:, :k] * w[:, :k].sqrt()).flatten(1)


def _interface_rows(plan, mine, other, conditions, cond_weights, frac, n_experts,
                    dim) -> torch.Tensor:
    """Interface rows in slots (axis, lower/upper side): (E, 2 * dim * n * sum_c width_c),
    and the conditions' widths c."""
    if not plan.n_sides or not conditions.names:
        dtype = next(iter(mine.values())).dtype if mine else torch.float64
        return torch.zeros(n_experts, 0, dtype=dtype), []
    mine = {**mine, "downstream": plan.downstream}
    parts = []
    for n in conditions.names:
        diff = CONDITIONS[n].residual(mine, other)  # (S, n, c)
        w = torch.full((plan.n_sides,), cond_weights.get(n, 1.0) * frac / diff.shape[1],
                       dtype=diff.dtype, device=diff.device)
        kinds = conditions.kinds(n)
        if len(kinds) == 1:
            w = w * plan.kind_mask[kinds[0]].to(w.dtype)
        parts.append((diff * w.sqrt()[:, None, None]).flatten(1))  # (S, n * c)
    widths = [p.shape[1] // plan.n_points for p in parts]
    sides = torch.cat(parts, dim=1)
    slot = 2 * plan.axis + plan.downstream.long()  # one side per (axis, side) of a box
    out = sides.new_zeros(n_experts, 2 * dim, sides.shape[1])
    out = out.index_put((plan.expert, slot), sides)
    return out.flatten(1), widths

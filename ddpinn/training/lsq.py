"""The per-expert loss as a sum of squares: residual blocks r_e with sum(r_e**2) = loss_e.

Each expert's loss (:func:`ddpinn.training.loss.local_loss`, the differentiable per-expert
term whose gradient the gradient optimizers follow) is a weighted sum of squares. Here the
weights are folded in as square roots, row by row:

==================  ================================================  ====================
block               rows                                              shape
==================  ================================================  ====================
PDE residual        sqrt(w_res * res_w * w_eq * causal) * res         (E, k_int * q)
boundary, data      sqrt(w_bc * bc_w) * (u - bc_target), likewise      (E, rows * m) each
interface           sqrt(w_c * frac / n) * residual of condition c,   (E, slots * n * c)
                    one slot per interface side of the subdomain
==================  ================================================  ====================

The row layout is a function of the expert's sid only (interior rows first, the boundary and
data rows over the padded rows that follow them, its interface sides in (interface id)
order in slots, zero rows where it has fewer sides than the slots), never of the rank's
other experts, so a least-squares optimizer does the same arithmetic for an expert on any
rank count. :func:`compact_layout` sizes the blocks to the maxima over the decomposition.

On a domain with a shape or ``[[boundary]]`` tables the boundary block is one row per
condition entry and output, sqrt(w_bc * w) * (A u + b grad u . n - g) (E, K * m), each entry
reading one row of the batch; the data block gathers every expert's data and observation
rows, padded to the decomposition's maximum (:func:`_shape_blocks`).

Only conditions with a residual form (:mod:`ddpinn.interface.conditions`) can be written so;
:func:`residual_form_missing` names the others.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import CONDITIONS, ConditionSet
from ddpinn.nn.taylor_engine import make_fields
from ddpinn.training.boundary_loss import boundary_residual, output_gradients


def residual_form_missing(conditions) -> list:
    """Names of the conditions in ``conditions`` that give a penalty only."""
    return [n for n in ConditionSet.of(conditions).names if CONDITIONS[n].residual is None]


@dataclass(frozen=True)
class Layout:
    """Rows of the boundary and data blocks after the interior rows, and interface slots per
    expert: maxima over the whole decomposition, so the same on every rank.

    On a batch with boundary rows (a shape or ``[[boundary]]`` tables) ``res_rows`` is the
    most interior rows of a subdomain, ``data_rows`` the most data rows (points.data and
    observations), and ``bc_rows`` is unused: the boundary block has the batch's entries K,
    already the maximum over the decomposition. ``res_rows`` None: a box batch."""

    bc_rows: int
    data_rows: int
    slots: int
    res_rows: int | None = None


def compact_layout(decomposition, points_cfg, time_axis=None, shape_counts=None,
                   observation_counts=None) -> Layout:
    """The smallest rank-independent :class:`Layout` of a decomposition (one replica).

    ``shape_counts``: the :class:`~ddpinn.training.points_shape.ShapeCounts` of a cut
    decomposition; ``observation_counts``: (S,) observation rows of every subdomain."""
    counts = decomposition.interface_counts()
    slots = int(counts.max()) if len(counts) and points_cfg.interface else 0
    obs = observation_counts if observation_counts is not None else np.zeros(1, np.int64)
    if shape_counts is not None:
        data = int((np.asarray(shape_counts.data) + obs).max())
        return Layout(0, data, slots, int(shape_counts.interior.max()))
    faces = int(decomposition.boundary_face_mask(time_axis).sum(axis=(1, 2)).max())
    # Observation rows follow every other row: the data block then runs to the end.
    data = points_cfg.data if not int(np.max(obs)) else 0
    return Layout(points_cfg.boundary * faces, data, slots)


def problem_layout(problem) -> Layout:
    """:func:`compact_layout` of a :class:`~ddpinn.problem.Problem` (box or shape)."""
    return compact_layout(problem.decomposition, problem.cfg.points, problem.time_axis,
                          problem.shape_counts, problem.observation_counts)


def residual_blocks(model, pde, params, batch, plan, comm, conditions, cond_weights, weights,
                    quantities, derivatives="taylor", causal=None,
                    residual_weights=None, per_point=None, layout=None) -> torch.Tensor:
    """Collective (neighbour exchange). Residual rows of this rank's experts: (E, M).

    The arguments are those of :func:`~ddpinn.training.loss.local_loss`. ``sum(r**2, -1)``
    is its per-expert loss (to rounding); the other side's interface values are detached.

    ``per_point``: optional ``(model, params)`` from :func:`per_point_copy`, evaluated
    instead, one point per copy; the rows are then the same functions of the copies'
    parameters, so a backward pass gives each point's own gradient. Returns ``(r, points)``
    then, ``points`` (E, M) the row of the batch each residual row depends on (-1: none).

    ``layout``: a :class:`Layout` (:func:`compact_layout`) leaves out rows that are zero for
    every expert of the decomposition; None: all padded rows, one interface slot per face.

    A batch with ``boundary_rows`` (a shape or ``[[boundary]]`` tables) gets its boundary
    block from those entries (:func:`_shape_blocks`), each reading one row of the batch.
    """
    conditions = ConditionSet.of(conditions)
    E, N, d = batch.x.shape
    bc = batch.boundary_rows
    x, n_copies, side_plan = batch.x.detach(), N, plan
    if per_point is not None:
        model, params = per_point
        n_copies = per_point_rows(N)
        # copy (e, n) evaluates row n of expert e; rows N.. repeat row 0 (never used)
        x = torch.cat([x, x[:, :1].expand(E, n_copies - N, d)], 1).reshape(-1, 1, d)
        side_plan = copy.copy(plan)
        side_plan.rows = plan.rows + plan.expert[:, None] * (n_copies - N)
    x = x.requires_grad_(True)
    fields = make_fields(model, x, pde.axes, pde.outputs, derivatives,
                         constant_data="gres" not in quantities)
    res_flat = pde.residual(fields, params)  # (E, N, q), or (E N', 1, q) per point
    mine = exchange.interface_values(side_plan, fields, res_flat, pde, params, quantities)
    handle = exchange.post(plan, comm, mine)
    res = res_flat.reshape(E, n_copies, -1)[:, :N]
    u = fields.u.reshape(E, n_copies, -1)[:, :N]  # (E, N, m)
    if bc is None:
        layout = layout or Layout(N - _interior_rows(batch), 0, 2 * d)
        blocks, cols = _box_blocks(res, u, batch, weights, causal, residual_weights, layout)
    else:
        layout = layout or Layout(0, N, 2 * d, N)
        grad = None
        if bc.needs_gradient:  # (E, N, m, d)
            grad = output_gradients(fields, u.shape[-1]).reshape(E, n_copies, -1, d)[:, :N]
        blocks, cols = _shape_blocks(res, u, grad, batch, weights, causal, residual_weights,
                                     layout)
    other = exchange.complete(plan, comm, mine, handle)
    rows, widths = _interface_rows(plan, mine, other, conditions, cond_weights,
                                   batch.interface_fraction, E, layout.slots)
    blocks.append(rows)
    r = torch.cat(blocks, dim=1)
    if per_point is not None:
        cols = cols() + _interface_points(widths, plan, E, N, layout.slots)
        return r, torch.cat([c.to(r.device) for c in cols], 1)
    return r


def _box_blocks(res, u, batch, weights, causal, residual_weights, layout):
    """PDE, boundary and data rows of a box batch (padded rows, boundary values in
    ``bc_w``/``bc_target``): a list of blocks (E, M_i), and a function giving their points
    (a list of (E, M_i) long)."""
    E, N = u.shape[:2]
    k_int = _interior_rows(batch)
    blocks = [_pde_rows(res, batch, weights, causal, residual_weights, k_int)]
    ends = [k_int + layout.bc_rows, k_int + layout.bc_rows + layout.data_rows]
    ends[1] = N if layout.data_rows == 0 else ends[1]
    spans = []
    for w, target, scale, end in ((batch.bc_w, batch.bc_target, weights.boundary, ends[0]),
                                  (batch.data_w, batch.data_target, weights.data, ends[1])):
        if not bool(w.any()):  # e.g. no data points: every expert's block would be zero
            continue
        rows = slice(k_int, min(end, N))
        blocks.append(((u[:, rows] - target[:, rows]) * (scale * w[:, rows]).sqrt()).flatten(1))
        spans.append(rows)

    def points():
        cols = [torch.arange(k_int).repeat_interleave(blocks[0].shape[1] // max(k_int, 1))
                .expand(E, -1)]
        for b, rows in zip(blocks[1:], spans):
            n = rows.stop - rows.start
            cols.append(torch.arange(rows.start, rows.stop).repeat_interleave(b.shape[1] // n)
                        .expand(E, -1))
        return cols

    return blocks, points


def _shape_blocks(res, u, grad, batch, weights, causal, residual_weights, layout):
    """PDE, boundary-condition and data rows of a batch with ``boundary_rows``: blocks
    (E, M_i) and a function giving their points ((E, M_i) long each).

    Subdomains differ in their counts of interior, boundary and data rows, so each block
    has the decomposition's maximum of rows (``layout``) and every row of weight 0 is given
    no point (-1): it is identically zero, and adds no backward pass to the Jacobian."""
    bc, m = batch.boundary_rows, u.shape[-1]
    k = layout.res_rows if layout.res_rows is not None else u.shape[1]
    pde = _pde_rows(res, batch, weights, causal, residual_weights, k)
    q = pde.shape[1] // max(k, 1)
    bc_w = weights.boundary * bc.w  # (E, K, m)
    blocks = [pde, (boundary_residual(bc, u, grad) * bc_w.sqrt()).flatten(1)]
    idx = _data_rows(batch.data_w, min(layout.data_rows, u.shape[1]))  # (E, D)
    safe = idx.clamp(min=0)[..., None].expand(-1, -1, m)
    data_w = torch.gather(batch.data_w, 1, safe) * (idx >= 0)[..., None].to(u.dtype)
    if idx.shape[1]:
        diff = torch.gather(u, 1, safe) - torch.gather(batch.data_target, 1, safe)
        blocks.append((diff * (weights.data * data_w).sqrt()).flatten(1))

    def points():
        rows = torch.arange(k, device=u.device).expand(len(u), -1)
        cols = [torch.where(batch.res_w[:, :k] > 0, rows, -1).repeat_interleave(q, 1),
                torch.where(bc.w > 0, bc.rows[..., None], -1).flatten(1)]
        if idx.shape[1]:
            cols.append(torch.where(data_w > 0, idx[..., None], -1).flatten(1))
        return cols

    return blocks, points


def _data_rows(data_w, n_rows: int) -> torch.Tensor:
    """The rows with data of every expert, in row order, padded with -1 to ``n_rows``:
    (E, n_rows) long."""
    has = data_w.detach().abs().sum(-1) > 0  # (E, N)
    n = has.sum(1)
    if len(n) and int(n.max()) > n_rows:
        raise ValueError(f"an expert has {int(n.max())} data rows, more than the "
                         f"{n_rows} of the decomposition's layout")
    order = torch.argsort((~has).to(torch.int8), dim=1, stable=True)[:, :n_rows]
    keep = torch.arange(n_rows, device=data_w.device) < n[:, None]
    return torch.where(keep, order, -1)


def _interface_points(widths, plan, E, N, slots) -> list:
    """Points of the interface rows (a list of one (E, slots * n * c) long, or none);
    rows of empty slots (all zero, no point) are given -1."""
    cols = []
    if widths:
        point = plan.rows - plan.expert[:, None] * N  # (S, n), the sides' own rows
        side_rows = torch.cat([point.repeat_interleave(w, 1) for w in widths], dim=1)
        out = side_rows.new_full((E, slots, side_rows.shape[1]), -1)
        out = out.index_put((plan.expert, _side_slot(plan)), side_rows)
        cols.append(out.flatten(1))
    return cols


def per_point_rows(n_rows: int) -> int:
    """Copies per expert for ``n_rows`` points: rounded up to a multiple of 8, so that the
    address of copy (e, n) in the batched copies, modulo the vector width, depends on n
    only, not on e (MKL rounds differently at different alignments)."""
    return -(-n_rows // 8) * 8


def per_point_copy(model, params: dict, n: int):
    """Every expert of ``model`` repeated ``n`` times (expert e's copies at e*n .. e*n+n-1),
    as new leaf tensors (its buffers too, except ``model.shared_buffers``), and ``params``
    with the (E, 1) leaves of shared unknowns repeated alike. Returns ``(copy, params, leaves)``, ``leaves`` the copied parameters (model's
    first, then the shared ones, in order), each (E n, ...)."""
    rep = copy.copy(model)
    rep._parameters, rep._buffers, rep._modules = {}, {}, {}
    for name, b in model._buffers.items():
        per_expert = b is not None and b.dim() and name not in model.shared_buffers
        rep._buffers[name] = b.repeat_interleave(n, 0) if per_expert else b
    leaves = []
    for name, sub in model._modules.items():  # the ParameterLists
        new = torch.nn.ParameterList()
        for p in sub:
            new.append(torch.nn.Parameter(p.detach().repeat_interleave(n, 0)))
        rep._modules[name] = new
        leaves += list(new)
    rep.sids = [s for s in model.sids for _ in range(n)]
    if model.output_transform is not None:
        rep.output_transform = model.output_transform.repeat_experts(n)
    params = dict(params)
    for name, v in list(params.items()):
        if isinstance(v, torch.Tensor) and v.requires_grad:
            params[name] = v.detach().repeat_interleave(n, 0).requires_grad_(True)
            leaves.append(params[name])
    return rep, params, leaves


def _interior_rows(batch) -> int:
    """Rows per expert that carry the PDE residual (the same for every expert)."""
    return int((batch.res_w[0] > 0).sum()) if batch.res_w.shape[0] else 0


def _pde_rows(res, batch, weights, causal, residual_weights, k: int) -> torch.Tensor:
    """sqrt-weighted PDE residual of the first ``k`` rows, (E, k * q)."""
    w = batch.res_w  # (E, N)
    if causal is not None:
        w = w * causal(res.detach().pow(2).sum(-1))
    if residual_weights is not None:
        w_eq = torch.as_tensor(residual_weights, dtype=res.dtype, device=res.device)
        w = w[..., None] * w_eq  # (E, N, q)
    else:
        w = (weights.residual * w)[..., None]
    return (res[:, :k] * w[:, :k].sqrt()).flatten(1)


def _side_slot(plan) -> torch.Tensor:
    """Slot of each side among its expert's sides: its position in the plan's (expert,
    interface id) order, a function of the expert alone: (S,) long."""
    first = torch.searchsorted(plan.expert, plan.expert)  # the expert's first side
    return torch.arange(plan.n_sides, device=plan.expert.device) - first


def _interface_rows(plan, mine, other, conditions, cond_weights, frac, n_experts,
                    slots) -> torch.Tensor:
    """Interface rows, one slot of sides per expert: (E, slots * n * sum_c width_c), and
    the conditions' widths c."""
    if not plan.n_sides or not conditions.names:
        dtype = next(iter(mine.values())).dtype if mine else torch.float64
        return torch.zeros(n_experts, 0, dtype=dtype, device=plan.expert.device), []
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
    out = sides.new_zeros(n_experts, slots, sides.shape[1])
    out = out.index_put((plan.expert, _side_slot(plan)), sides)
    return out.flatten(1), widths

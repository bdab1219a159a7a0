"""Hard Dirichlet conditions (``hard = true``): phi_k and g_k of u_k = g_k + phi_k N_k.

For every output k with hard conditions, over the boundary pieces i of their tags:

- phi_i: the distance to the piece's carrier surface (:mod:`ddpinn.geometry.distance`),
  divided by the bounding box's diameter; on the tag ``initial``, (t - t0) / (t1 - t0);
- phi_k = (sum_i phi_i^-1)^-1 (R-equivalence, m = 1), formed as prod_i phi_i / sum_i P_i
  with P_i = prod_{j != i} phi_j, which is exactly 0 on a piece (no division by 0);
- g_k: the one value when all pieces share it, else the transfinite interpolation
  sum_i w_i g_i with w_i = phi_i^-1 / sum_j phi_j^-1 = P_i / sum_j P_j.

Values must be closed forms in torch (:data:`TORCH_VALUES`): numbers, expressions,
``"exact"``. :func:`check_hard` refuses everything else, and carriers that cut the
domain's interior, before anything is written.
"""
from __future__ import annotations

import numpy as np
import sympy
import torch

from ddpinn.boundary.kinds import INITIAL_TAG
from ddpinn.boundary.values import Constant, Exact, Expression, float_params
from ddpinn.geometry.distance import NoCarrier, carrier_distance
from ddpinn.nn.distance_constraint import DistanceConstraint

#: Interior points the carrier check samples (fixed seed: every rank decides alike).
CHECK_POINTS, CHECK_SEED = 4096, 0

#: Value class -> ``make(value, k, pde, params, axes) -> g(x (..., d)) -> (...)``, torch.
TORCH_VALUES: dict = {}


def _register(cls):
    def deco(fn):
        TORCH_VALUES[cls] = fn
        return fn
    return deco


@_register(Constant)
def _constant(value, k, pde, params, axes):
    return lambda x: torch.full(x.shape[:-1], value.value, dtype=x.dtype, device=x.device)


@_register(Exact)
def _exact(value, k, pde, params, axes):
    def g(x):
        flat = x.reshape(-1, x.shape[-1])
        return pde.exact(flat, params)[:, k].reshape(x.shape[:-1])
    return g


@_register(Expression)
def _expression(value, k, pde, params, axes):
    by_name = {str(s): s for s in value.expr.free_symbols}
    cols = [(i, by_name[a]) for i, a in enumerate(axes) if a in by_name]
    expr = value.expr.subs({by_name[n]: params[n] for n in value.params})
    fn = sympy.lambdify([s for _, s in cols], expr, modules="torch")

    def g(x):
        out = fn(*[x[..., i] for i, _ in cols])
        out = torch.as_tensor(out, dtype=x.dtype, device=x.device)
        return out.expand(x.shape[:-1]) if out.shape != x.shape[:-1] else out
    return g


def hard_tables(conditions) -> list:
    """(index, condition) of the conditions with ``hard = true``."""
    return [(i, c) for i, c in enumerate(conditions) if getattr(c, "hard", False)]


def _piece_distances(shape, tag, time_axis, t_range):
    """The carrier distances, each ``x (..., d) -> (...)`` divided by its length, of the
    pieces of ``tag``."""
    if tag == INITIAL_TAG:
        t0, length = float(t_range[0]), float(t_range[1] - t_range[0])
        return [lambda x: (x[..., time_axis] - t0) / length]
    scale = float(np.linalg.norm(shape.upper - shape.lower))
    dim = shape.dim
    return [lambda x, p=p: carrier_distance(p, x[..., :dim]) / scale
            for p in shape.pieces() if p.tag == tag]


def _terms(conditions, shape, pde, axes, time_axis, t_range):
    """Per output k: a list of (distance function, value key, value function)."""
    params = float_params(pde.params)
    terms = {k: [] for k in range(pde.n_out)}
    for _, cond in hard_tables(conditions):
        for k in cond.outputs:
            value = cond.values[pde.outputs[k]]
            g = TORCH_VALUES[type(value)](value, k, pde, params, axes)
            for tag in cond.tags:
                for dist in _piece_distances(shape, tag, time_axis, t_range):
                    terms[k].append((dist, id(value), g))
    return terms


def _combine(dists):
    """phi = prod phi_i / sum_i P_i and the weights P_i / sum_j P_j, P_i = prod_{j!=i} phi_j."""
    n = len(dists)
    others = []
    for i in range(n):
        p = torch.ones_like(dists[0])
        for j in range(n):
            if j != i:
                p = p * dists[j]
        others.append(p)
    total = others[0]
    for p in others[1:]:
        total = total + p
    # Where two carriers meet (a corner) every P_i is 0: phi is 0 there, and the values of
    # the pieces through the point share the weight. The safe denominator keeps 0/0 out of
    # the values and of their gradients.
    corner = total == 0
    safe = torch.where(corner, torch.ones_like(total), total)
    on = [(d == 0).to(d.dtype) for d in dists]
    count = sum(on) if n > 1 else on[0]
    count = torch.where(corner, count, torch.ones_like(count))
    weights = [torch.where(corner, z / count, p / safe) for p, z in zip(others, on)]
    return dists[0] * others[0] / safe, weights


def _parts(terms, n_out):
    """The ``parts(x) -> (phi, g)`` of :class:`DistanceConstraint` for ``terms``."""
    def parts(x):
        ones = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
        phis, gs = [], []
        for k in range(n_out):
            if not terms[k]:
                phis.append(ones)
                gs.append(torch.zeros_like(ones))
                continue
            phi, weights = _combine([dist(x) for dist, _, _ in terms[k]])
            values = {}
            for (_, key, g), w in zip(terms[k], weights):
                values[key] = (g, values.get(key, (g, 0.0))[1] + w)
            if len(values) == 1:  # one value on every hard piece: g itself
                gk = next(iter(values.values()))[0](x)
            else:
                gk = sum(w * g(x) for g, w in values.values())
            phis.append(phi)
            gs.append(gk)
        return torch.stack(phis, -1), torch.stack(gs, -1)
    return parts


def hard_constraint(problem) -> DistanceConstraint:
    """The :class:`DistanceConstraint` of the problem's hard Dirichlet conditions."""
    pde, conds = problem.pde, problem.boundary_conditions
    t_range = problem.cfg.domain.time if problem.time_axis is not None else None
    terms = _terms(conds, problem.shape, pde, pde.axes, problem.time_axis, t_range)
    return DistanceConstraint(_parts(terms, pde.n_out), [bool(terms[k])
                                                        for k in range(pde.n_out)])


def check_hard(conditions, shape, pde) -> None:
    """Refuse hard conditions that cannot be imposed, naming ``boundary[i].hard``:
    values without a closed form in torch, pieces without a carrier (triangle surfaces),
    and carriers that cut the domain's interior. Raises ValueError."""
    params = float_params(pde.params)
    for i, cond in hard_tables(conditions):
        field = f"boundary[{i}].hard"
        for k in cond.outputs:
            value = cond.values[pde.outputs[k]]
            make = TORCH_VALUES.get(type(value))
            if make is None:
                raise ValueError(f"field '{field}': the value {value} of output "
                                 f"{pde.outputs[k]!r} has no closed form (a function of a "
                                 f"module or file data); a hard condition needs a number, "
                                 f"an expression or \"exact\"")
            try:
                make(value, k, pde, params, pde.axes)(torch.zeros(2, len(pde.axes),
                                                                  dtype=torch.float64))
            except Exception as exc:  # sympy's torch printer: functions it cannot print
                raise ValueError(f"field '{field}': the value {value} of output "
                                 f"{pde.outputs[k]!r} cannot be evaluated in torch: "
                                 f"{exc}") from None
        for tag in cond.tags:
            if tag != INITIAL_TAG:
                _check_carriers(shape, tag, field)


def _check_carriers(shape, tag: str, field: str) -> None:
    """Every carrier of ``tag`` stays off the interior.

    A carrier that does not enter the open domain is at least as far from an interior
    point as the boundary is (the shortest path to it leaves the domain), and the curved
    carriers' phi is at least half its distance; the shapes' sdf never overstates the
    depth inside (CSG takes min/max of the parts). So a valid carrier has
    phi_i >= depth / 2 >= |sdf| / 2 at every interior point. One that cuts the interior
    has phi_i = 0 on the cut, and a band of sampled points around it with
    phi_i < |sdf| / 4 (the factor 2 below the bound leaves room for rounding). Points
    within 1e-6 of the domain's size of the boundary are left out (rounding of the sdf).
    """
    pts = shape.sample_interior(CHECK_POINTS, np.random.default_rng(CHECK_SEED))
    depth = -shape.sdf(pts)
    x = torch.as_tensor(pts, dtype=torch.float64)
    for piece in (p for p in shape.pieces() if p.tag == tag):
        try:
            phi = carrier_distance(piece, x).numpy()
        except NoCarrier:
            raise ValueError(f"field '{field}': tag {tag!r} is a triangle surface (an STL "
                             f"mesh); hard conditions are not available on triangle "
                             f"surfaces: give it as a soft condition (hard = false)") from None
        bad = (depth > 1e-6 * shape.scale) & (phi < 0.25 * depth)
        if bad.any():
            at = pts[int(np.argmax(bad))].round(6).tolist()
            kind = type(getattr(piece, "piece", piece)).__name__
            raise ValueError(f"field '{field}': the carrier surface of a piece of tag "
                             f"{tag!r} (its {kind} extended) passes through "
                             f"the interior of the domain (near {at}), where the distance "
                             f"function would vanish; use a soft condition on this tag, or "
                             f"split it so that each hard piece's carrier stays outside")

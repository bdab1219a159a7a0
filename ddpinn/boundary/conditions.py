"""Boundary conditions of a case: ``[[boundary]]`` tables -> :class:`BoundaryCondition`, and
the rows of the linear conditions on boundary points (:func:`condition_rows`).

.. code-block:: toml

    [[boundary]]
    tags = ["inlet"]              # a string or a list of the domain's boundary tags
    kind = "dirichlet"            # dirichlet, neumann, robin, outflow, initial_rate
    values = { u = "4*0.3*y*(0.41-y)/0.41**2", v = 0.0 }   # or one value for all outputs
    weight = 1.0                  # multiplies loss.boundary for these rows
    # robin only: alpha, beta (alpha u + beta du/dn = g)
    hard = false                  # dirichlet only: imposed exactly, u = g + phi N

Everything here is numpy float64 except ``"exact"`` values (torch autograd on ``pde.exact``);
nothing communicates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field
from typing import NamedTuple

import numpy as np
import torch

from ddpinn.boundary.kinds import BOUNDARY_KINDS, INITIAL_TAG
from ddpinn.boundary.values import Exact, float_params, is_data_value, parse_value

KEYS = ("tags", "kind", "values", "weight", "alpha", "beta", "hard")


@dataclass(frozen=True)
class BoundaryCondition:
    """One ``[[boundary]]`` table, validated.

    Attributes
    ----------
    tags : tuple of str -- boundary pieces it holds on
    kind : str -- a key of :data:`BOUNDARY_KINDS`
    outputs : tuple of int -- constrained outputs, in the PDE's order
    values : dict output name -> :class:`~ddpinn.boundary.values.Value`, one per constrained
        output
    weight : float -- multiplies ``loss.boundary`` on these rows
    alpha, beta : float -- robin coefficients (1 and 0 for the other kinds)
    hard : bool -- imposed exactly by the outputs' form (:mod:`ddpinn.boundary.hard`);
        its rows stay in the loss, where their misfit is rounding only
    """

    tags: tuple
    kind: str
    outputs: tuple
    values: dict = dc_field(default_factory=dict)
    weight: float = 1.0
    alpha: float = 1.0
    beta: float = 0.0
    hard: bool = False


class Rows(NamedTuple):
    """Rows of a condition on n points, m outputs, d axes (float64 numpy):
    ``sum_j A[r, k, j] u_j + b[r, k] (grad u_k . direction[r]) = target[r, k]`` where
    ``mask[r, k]`` is 1."""

    A: np.ndarray          # (n, m, m)
    b: np.ndarray          # (n, m)
    direction: np.ndarray  # (n, d)
    target: np.ndarray     # (n, m)
    mask: np.ndarray       # (n, m), 0.0 / 1.0


def _number(raw, field: str, lower=None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ValueError(f"field '{field}' = {raw!r} must be a finite number")
    if lower is not None and raw < lower:
        raise ValueError(f"field '{field}' = {raw!r} must be >= {lower}")
    return float(raw)


def _tags(raw, field: str, known: tuple) -> tuple:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not items or \
            not all(isinstance(t, str) for t in items):
        raise ValueError(f"field '{field}' = {raw!r} must be a tag or a non-empty list of "
                         f"tags; the domain's tags: {', '.join(known)}")
    for tag in items:
        if tag not in known:
            raise ValueError(f"field '{field}' = {raw!r}: {tag!r} is not a boundary tag of "
                             f"the domain; its tags: {', '.join(known)}")
    return tuple(dict.fromkeys(items))


def _values(raw, field: str, kind, pde, axes, data=None) -> dict:
    """Output name -> Value, for the outputs the condition constrains."""
    allowed = [pde.outputs[k] for k in kind.outputs(pde)]
    if is_data_value(raw, pde):  # one data source for every constrained output
        return {n: parse_value(raw, f"{field}.{n}", pde, axes, data) for n in allowed}
    if raw is None:
        if kind.default_value is None:
            raise ValueError(f"field '{field}' is required for kind {kind.name!r}: a value "
                             f"for each of {', '.join(allowed)}, or one for all")
        return {n: parse_value(kind.default_value, f"{field}.{n}", pde, axes) for n in allowed}
    if not isinstance(raw, dict):
        return {n: parse_value(raw, field, pde, axes, data) for n in allowed}
    if not raw:
        raise ValueError(f"field '{field}' is empty: give a value for some of "
                         f"{', '.join(allowed)}")
    for name in raw:
        if name not in pde.outputs:
            raise ValueError(f"field '{field}.{name}': {name!r} is not an output of PDE "
                             f"{pde.name!r}; its outputs: {', '.join(pde.outputs)}")
        if name not in allowed:
            raise ValueError(f"field '{field}.{name}': kind {kind.name!r} constrains "
                             f"{', '.join(allowed)} only")
    out = {}
    for name in allowed:
        if name in raw:
            out[name] = parse_value(raw[name], f"{field}.{name}", pde, axes, data)
        elif kind.default_value is not None:
            out[name] = parse_value(kind.default_value, f"{field}.{name}", pde, axes)
    return out


def _hard(spec: dict, kind: str, where: str) -> bool:
    """``hard``: a bool, true for kind dirichlet only."""
    raw = spec.get("hard", False)
    if not isinstance(raw, bool):
        raise ValueError(f"field '{where}.hard' = {raw!r} must be true or false")
    if raw and kind != "dirichlet":
        raise ValueError(f"field '{where}.hard' = true: only kind 'dirichlet' can be "
                         f"imposed exactly (this one is {kind!r})")
    return raw


def parse_boundary(specs, pde, axes: tuple, tags: tuple, data=None) -> list:
    """Validate the ``[[boundary]]`` tables of a case.

    Parameters
    ----------
    specs : list of dict -- the tables, in order
    pde : PDE instance
    axes : tuple of str -- the problem's axes, e.g. ("x", "y", "t")
    tags : tuple of str -- the domain's boundary tags (a time-dependent problem also has
        "initial", added here when missing)
    data : dict name -> DataInput, optional -- the case's [[data]] tables, which values
        may name (``{ data = "name" }``)

    Returns
    -------
    list of :class:`BoundaryCondition`

    Raises
    ------
    ValueError naming the field ``boundary[i].key`` and what is allowed.
    """
    axes = tuple(axes)
    known = tuple(tags) + ((INITIAL_TAG,) if "t" in axes and INITIAL_TAG not in tags else ())
    if not isinstance(specs, (list, tuple)):
        raise ValueError(f"field 'boundary' = {specs!r} must be an array of tables "
                         f"([[boundary]])")
    out = []
    for i, spec in enumerate(specs):
        where = f"boundary[{i}]"
        if not isinstance(spec, dict):
            raise ValueError(f"field '{where}' = {spec!r} must be a table")
        for key in spec:
            if key not in KEYS:
                raise ValueError(f"field '{where}.{key}' is not a boundary key; allowed: "
                                 f"{', '.join(KEYS)}")
        for key in ("tags", "kind"):
            if key not in spec:
                raise ValueError(f"field '{where}.{key}' is required")
        name = spec["kind"]
        if not isinstance(name, str) or name not in BOUNDARY_KINDS:
            raise ValueError(f"field '{where}.kind' = {name!r} is not a boundary condition "
                             f"kind; allowed: {', '.join(BOUNDARY_KINDS)}")
        kind = BOUNDARY_KINDS[name]
        cond_tags = _tags(spec["tags"], f"{where}.tags", known)
        kind.check(pde, axes, cond_tags, where)
        for key in ("alpha", "beta"):
            if key in spec and key not in kind.extra:
                raise ValueError(f"field '{where}.{key}' is only for kind 'robin' "
                                 f"(this one is {name!r})")
        coeffs = {}
        for key in kind.extra:
            if key not in spec:
                raise ValueError(f"field '{where}.{key}' is required for kind {name!r}")
            coeffs[key] = _number(spec[key], f"{where}.{key}")
        if kind.extra and not any(coeffs.values()):
            raise ValueError(f"field '{where}.alpha' and '{where}.beta' are both 0: the "
                             f"condition would be empty")
        values = _values(spec.get("values"), f"{where}.values", kind, pde, axes, data)
        outputs = tuple(k for k, n in enumerate(pde.outputs) if n in values)
        out.append(BoundaryCondition(cond_tags, name, outputs, values,
                                     _number(spec.get("weight", 1.0), f"{where}.weight", 0.0),
                                     hard=_hard(spec, name, where), **coeffs))
    return out


def needs_gradient(conds) -> bool:
    """True when some condition's rows involve derivatives of the outputs."""
    return any(BOUNDARY_KINDS[c.kind].uses_gradient(c) for c in conds)


def condition_rows(cond: BoundaryCondition, x, normal, pde, params: dict) -> Rows:
    """The rows of ``cond`` on boundary points.

    Parameters
    ----------
    cond : BoundaryCondition
    x : (n, d) -- points (space axes, then t)
    normal : (n, d) -- unit outward normals in space (0 along t)
    pde : PDE instance; params : dict of its parameters (numbers or scalar tensors)

    Returns
    -------
    Rows, float64: rows of outputs that ``cond`` leaves free are zero, mask 0.
    """
    x = np.asarray(x, dtype=np.float64)
    normal = np.asarray(normal, dtype=np.float64)
    n, m = len(x), pde.n_out
    A, b, direction = BOUNDARY_KINDS[cond.kind].operator(cond, normal, pde, params)
    mask = np.zeros((n, m))
    mask[:, list(cond.outputs)] = 1.0
    A, b = A * mask[:, :, None], b * mask
    target = np.zeros((n, m))
    exact = None
    for k in cond.outputs:
        value = cond.values[pde.outputs[k]]
        if isinstance(value, Exact):
            if exact is None:
                exact = exact_target(x, A, b, direction, pde, params)
            target[:, k] = exact[:, k]
        else:
            target[:, k] = value.evaluate(x, params)
    return Rows(A, b, direction, target, mask)


def operator_value(A, b, direction, u, grad):
    """B(u) = sum_j A[..., k, j] u_j + b[..., k] (grad u_k . direction), numpy or torch.

    Shapes: A (..., m, m), b (..., m), direction (..., d), u (..., m), grad (..., m, d) or
    None when every b is zero; returns (..., m). The one place the operator is written:
    the loss, the exact targets and :func:`apply_rows` all call it.
    """
    lib = torch if isinstance(u, torch.Tensor) else np
    out = lib.einsum("...kj,...j->...k", A, u)
    if grad is not None:
        out = out + b * lib.einsum("...kd,...d->...k", grad, direction)
    return out


def apply_rows(rows: Rows, u, grad):
    """B(u) - g on the rows, masked: u (n, m), grad (n, m, d) -> (n, m).

    Works on numpy arrays and on torch tensors (rows are converted to u's dtype/device);
    ``grad`` may be None when every b is zero.
    """
    if isinstance(u, torch.Tensor):
        rows = Rows(*(torch.as_tensor(a, dtype=u.dtype, device=u.device) for a in rows))
    return (operator_value(rows.A, rows.b, rows.direction, u, grad) - rows.target) * rows.mask


def exact_target(x, A, b, direction, pde, params) -> np.ndarray:
    """B(u*) for the PDE's exact solution u*: (n, m), through torch autograd."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        u = pde.exact(xt, float_params(params))
        grads = []
        for k in range(pde.n_out):
            if np.any(b[:, k]):
                g, = torch.autograd.grad(u[:, k].sum(), xt, retain_graph=True)
            else:
                g = torch.zeros_like(xt)
            grads.append(g)
    grad = torch.stack(grads, dim=1).detach().numpy()  # (n, m, d)
    u = u.detach().numpy()
    return operator_value(A, b, direction, u, grad)

"""Set-up of a problem on a domain with a shape, or with boundary conditions per tag.

A shape (``domain.shape``) cuts the grid over its bounding box: cells outside are dropped,
interfaces kept where their face meets the domain. A box case that gives ``[[boundary]]``
tables is the same path with the box as the shape, its faces tagged ``x_lower``,
``x_upper``, ... (and ``initial`` at t = t0). Everything here is checked before anything is
written; errors are :class:`ConfigError` naming the field.
"""
from __future__ import annotations

import numpy as np

from ddpinn.io.config import ConfigError
from ddpinn.io.config_stages import resampler_fields

BOX_TYPES = {1: "interval", 2: "rectangle", 3: "box"}


def case_shape(cfg):
    """The Shape of a case: ``domain.shape``, or the box of ``domain.lower/upper``."""
    from ddpinn.geometry.spec import shape_from_spec

    spec = cfg.domain.shape or {"type": BOX_TYPES[cfg.space_dim],
                                "lower": list(cfg.domain.lower),
                                "upper": list(cfg.domain.upper)}
    try:
        return shape_from_spec(spec, "domain.shape")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_supported(cfg) -> None:
    """Features that do not (yet) combine with a shaped domain: one message each."""
    what = "'domain.shape'" if cfg.domain.shape else "'[[boundary]]' conditions"
    r3_at = [field for field, name in resampler_fields(cfg).items() if name == "r3"]
    unsupported = [
        (cfg.domain.periodic, "domain.periodic", "periodic axes"),
        (cfg.parallel.replicas > 1, "parallel.replicas", "data-parallel replicas"),
        (bool(r3_at), (r3_at or [""])[0], "R3 resampling (it redraws points in the "
                                           "cell's box)"),
        (cfg.points.sampling != "uniform", "points.sampling", "low-discrepancy points (a "
                                                               "shape keeps uniform ones)"),
        (cfg.network.hard_initial, "network.hard_initial", "a hard initial condition "
                                                            "(give it as a [[boundary]] "
                                                            "condition on tag 'initial')"),
    ]
    for active, field, name in unsupported:
        if active:
            raise ConfigError(f"field {field!r}: {name} cannot be combined with {what}")


def shaped_decomposition(cfg, pde, decomposition, time_axis, data=None):
    """``(shape, cut decomposition, boundary conditions, ShapeCounts)`` of a case with a
    shape or [[boundary]] tables; ``data``: the case's DataInputs by name, which condition
    values may name. Raises ConfigError."""
    from ddpinn.boundary import parse_boundary
    from ddpinn.boundary.hard import check_hard
    from ddpinn.decomposition.cut import cut_decomposition
    from ddpinn.training.points_shape import INITIAL_TAG, shape_counts

    check_supported(cfg)
    shape = case_shape(cfg)
    tags = tuple(shape.tags) + ((INITIAL_TAG,) if time_axis is not None else ())
    specs = cfg.boundary or [default_condition(pde, tags)]
    try:
        conditions = parse_boundary(specs, pde, pde.axes, tags, data)
        check_hard(conditions, shape, pde)
        cut = cut_decomposition(decomposition, shape, time_axis)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    counts = shape_counts(cut, cfg.points, time_axis, conditions)
    starved = [s for s in range(cut.n_subdomains) if counts.interior[s] == 0]
    if starved:
        raise ConfigError(f"field 'decomposition.grid' = {list(cfg.decomposition.grid)}: "
                          f"subdomain {starved[0]} has no interior points inside the domain")
    return shape, cut, conditions, counts


def default_condition(pde, tags) -> dict:
    """Without [[boundary]] tables: the PDE's exact solution as Dirichlet data on every
    tag, as on a box."""
    if not pde.has_exact:
        raise ConfigError(f"the domain's boundary has tags {', '.join(tags)} but the case "
                          f"gives no [[boundary]] conditions, and PDE {pde.name!r} has no "
                          f"exact solution to take them from: add [[boundary]] tables")
    return {"tags": list(tags), "kind": "dirichlet", "values": "exact"}


def shape_summary(problem) -> list:
    """Lines for ``ddpinn info``: the shape's tags and their conditions, the cut cells and
    the points per subdomain."""
    d, counts = problem.decomposition, problem.shape_counts
    frac = np.asarray(d.volume_fraction, float)
    n_cells = int(np.prod(d.grid))
    lines = [f"shape: {type(problem.shape).__name__}, boundary tags "
             f"{', '.join(problem.shape.tags)}"]
    covered = set()
    for c in problem.boundary_conditions:
        covered.update(c.tags)
        hard = " (hard)" if getattr(c, "hard", False) else ""
        lines.append(f"  {c.kind + hard:<13} on {', '.join(c.tags)}")
    free = [t for t in problem.shape.tags if t not in covered]
    if free:
        lines.append(f"  no condition (free) on {', '.join(free)}")
    cut = np.flatnonzero(frac < 1.0)
    lines.append(f"cut cells: {n_cells} grid cells, {n_cells - d.n_subdomains} outside the "
                 f"domain dropped, {len(cut)} kept cut (inside fraction "
                 f"{frac.min():.3f} to {frac.max():.3f}); sids cut: {_short(cut)}")
    lines.append(f"points per subdomain: interior {counts.interior.min()}-"
                 f"{counts.interior.max()}, boundary {counts.boundary.min()}-"
                 f"{counts.boundary.max()}, rows {counts.rows.min()}-{counts.rows.max()}")
    if counts.values_apart:
        lines.append("boundary, initial and data points: outputs only, no derivatives "
                     "(no condition reads one)")
    return lines


def _short(sids) -> str:
    sids = [int(s) for s in sids]
    return ", ".join(map(str, sids[:12])) + (", ..." if len(sids) > 12 else "") or "none"

"""Problem set-up from a validated config: the PDE, the domain and its decomposition.

Rank-independent and free of MPI; the solver takes what is built here plus a communicator.
"""
from __future__ import annotations

from dataclasses import dataclass

from ddpinn.decomposition import Decomposition, decompose
from ddpinn.geometry import Box
from ddpinn.interface.conditions import DEFAULT_CONDITIONS, ConditionSet
from ddpinn.io.config import Config, ConfigError
from ddpinn.pdes import PDE, get_pde_class


@dataclass
class Problem:
    """What is solved: the PDE, the domain, its decomposition and the interface conditions."""

    cfg: Config
    pde: PDE
    box: Box
    decomposition: Decomposition
    time_axis: int | None
    conditions: ConditionSet
    condition_weights: dict
    stage_conditions: list  # one ConditionSet per training stage


def build_problem(cfg: Config) -> Problem:
    """Build the :class:`Problem` of a case; raise :class:`ConfigError` on bad names."""
    try:
        cls = get_pde_class(cfg.pde.name)
        pde = cls(cfg.space_dim, cfg.pde.params)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if pde.time_dependent != cfg.has_time:
        need = "needs" if pde.time_dependent else "has no"
        raise ConfigError(f"PDE {pde.name!r} {need} a time axis: "
                          f"{'set' if pde.time_dependent else 'remove'} field 'domain.time'")
    for name in cfg.pde.inverse:
        if name not in pde.params:
            raise ConfigError(f"field 'pde.inverse.{name}' is not a parameter of PDE "
                              f"{pde.name!r}; allowed: {', '.join(pde.params)}")
    if (cfg.pde.inverse or cfg.points.data) and not pde.has_exact:
        raise ConfigError(f"PDE {pde.name!r} has no exact solution to draw data from: "
                          f"'points.data' and 'pde.inverse' need one")
    lower = list(cfg.domain.lower) + ([cfg.domain.time[0]] if cfg.has_time else [])
    upper = list(cfg.domain.upper) + ([cfg.domain.time[1]] if cfg.has_time else [])
    box = Box(tuple(map(float, lower)), tuple(map(float, upper)), cfg.axis_names)
    periodic = [n in cfg.domain.periodic for n in cfg.axis_names]
    time_axis = cfg.axis_names.index("t") if cfg.has_time else None
    decomposition = decompose(box, cfg.decomposition.grid, periodic, time_axis)

    conditions = cfg.interface.conditions
    weights = dict(cfg.interface.weights)
    if isinstance(conditions, str):
        if not conditions.startswith("metalic:") or not conditions[len("metalic:"):]:
            raise ConfigError(f"field 'interface.conditions' = {conditions!r}: give a list of "
                              f"condition names, or \"metalic:PATH\" (a METALIC campaign file "
                              f"or state) for the conditions it learnt best for these PDE "
                              f"parameters")
        from ddpinn.metalic import resolve_conditions

        conditions = ConditionSet.of(
            resolve_conditions(conditions[len("metalic:"):], pde.name, pde.params))
        # weights of conditions the campaign did not pick do not apply
        weights = {k: v for k, v in weights.items() if k in conditions}
    try:
        conditions = ConditionSet.of(conditions or list(DEFAULT_CONDITIONS))
        # A stage may name its own set (e.g. METALIC's two-stage choice); default: the case's.
        stage_conditions = [conditions if st.conditions is None else
                            ConditionSet.of(st.conditions, f"stages[{i}].conditions")
                            for i, st in enumerate(cfg.stages)]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    active = sorted({c for names in [conditions] + stage_conditions for c in names})
    for c in weights:
        if c not in active:
            raise ConfigError(f"field 'interface.weights.{c}' weights a condition that is "
                              f"not active; active: {', '.join(active)}")
    return Problem(cfg, pde, box, decomposition, time_axis, conditions, weights,
                   stage_conditions)

"""Problem set-up from a validated config: the PDE, the domain and its decomposition.

Rank-independent and free of MPI; the solver takes what is built here plus a communicator.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ddpinn.decomposition import Decomposition, decompose
from ddpinn.geometry import Box
from ddpinn.interface.conditions import DEFAULT_CONDITIONS, ConditionSet, condition_source
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
    # Weight of each equation of the residual (loss.residual as a list or table), or None
    # when loss.residual is one number for all equations.
    residual_weights: tuple | None = None
    # The domain's shape (domain.shape, or the box with tagged faces when the case gives
    # [[boundary]] conditions), its conditions and the points of each subdomain; None,
    # (), None on a box with the PDE's Dirichlet data on every face.
    shape: object = None
    boundary_conditions: tuple = ()
    shape_counts: object = None
    # The [[data]] tables with their files opened (ddpinn.data.DataInput), by name
    data: dict = field(default_factory=dict)
    # Observations per subdomain (S,), set collectively when the solver reads its part of
    # the observation files (ddpinn.data.observations); None without observations
    observation_counts: object = None

    def data_for(self, use: str) -> list:
        """The DataInputs of one use (observations, boundary, reference), in table order."""
        return [d for d in self.data.values() if d.spec.use == use]

    @property
    def work(self):
        """Points per subdomain (S,) that the partition balances, or None (a box: the grid
        partition)."""
        return None if self.shape_counts is None else self.shape_counts.rows


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
    from ddpinn.data.inputs import open_inputs

    data = open_inputs(cfg.data, pde, box_of(cfg))
    observed = any(d.spec.use == "observations" for d in data.values())
    if cfg.pde.inverse and not (pde.has_exact or observed):
        raise ConfigError(f"PDE {pde.name!r} has no exact solution to draw data from: "
                          f"'pde.inverse' needs one, or observations from a file "
                          f"([[data]] with use = \"observations\")")
    if observed and cfg.parallel.replicas > 1:
        raise ConfigError(f"field 'parallel.replicas' = {cfg.parallel.replicas}: observations "
                          f"from files ([[data]] with use = \"observations\") need replicas = 1")
    if cfg.points.data and not pde.has_exact:
        raise ConfigError(f"PDE {pde.name!r} has no exact solution to draw data from: "
                          f"'points.data' needs one (observations from a file: [[data]])")
    residual_weights = resolve_residual_weights(cfg.loss.residual, pde)
    _check_architecture(cfg.network.architecture)
    if pde.reference and type(pde).load_reference is PDE.load_reference:
        from ddpinn.io.reference import resolve

        try:  # the file is read later (on every rank); a missing one stops the run here
            resolve(pde.reference, pde.name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    box = box_of(cfg)
    periodic = [n in cfg.domain.periodic for n in cfg.axis_names]
    time_axis = cfg.axis_names.index("t") if cfg.has_time else None
    cuts = [cfg.decomposition.cuts.get(n) for n in cfg.axis_names]
    try:
        decomposition = decompose(box, cfg.decomposition.grid, periodic, time_axis, cuts)
    except ValueError as exc:
        raise ConfigError(f"field 'decomposition.cuts': {exc}") from None
    shape, boundary_conditions, counts = None, (), None
    if getattr(pde, "needs_boundary_tables", False) and not cfg.boundary:
        raise ConfigError(f"PDE {pde.name!r} has no boundary data of its own: give its "
                          f"conditions as [[boundary]] tables (see docs/boundary.md)")
    if cfg.domain.shape or cfg.boundary:
        from ddpinn.problem_shape import shaped_decomposition

        shape, decomposition, boundary_conditions, counts = shaped_decomposition(
            cfg, pde, decomposition, time_axis, data)

    conditions = cfg.interface.conditions
    weights = dict(cfg.interface.weights)
    if isinstance(conditions, str):
        prefix, _, arg = conditions.partition(":")
        resolve = condition_source(prefix) if arg else None
        if resolve is None:
            raise ConfigError(f"field 'interface.conditions' = {conditions!r}: give a list of "
                              f"condition names, or \"metalic:PATH\" (a METALIC campaign file "
                              f"or state) for the conditions it learnt best for these PDE "
                              f"parameters")
        conditions = ConditionSet.of(resolve(arg, pde.name, pde.params))
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
    _check_stage_optimizers(cfg, stage_conditions)
    active = sorted({c for names in [conditions] + stage_conditions for c in names})
    for c in weights:
        if c not in active:
            raise ConfigError(f"field 'interface.weights.{c}' weights a condition that is "
                              f"not active; active: {', '.join(active)}")
    problem = Problem(cfg, pde, box, decomposition, time_axis, conditions, weights,
                      stage_conditions, residual_weights, shape, tuple(boundary_conditions),
                      counts, data)
    _check_quantities(problem)
    return problem


def box_of(cfg: Config) -> Box:
    """The bounding box of the domain: space axes, then t."""
    lower = list(cfg.domain.lower) + ([cfg.domain.time[0]] if cfg.has_time else [])
    upper = list(cfg.domain.upper) + ([cfg.domain.time[1]] if cfg.has_time else [])
    return Box(tuple(map(float, lower)), tuple(map(float, upper)), cfg.axis_names)


def _check_quantities(problem: Problem) -> None:
    """ConfigError unless the quantities of interest of ``[output]`` fit the problem
    (boundary tags of the domain, probes inside it, a flow PDE for forces)."""
    from ddpinn.quantities_of_interest import check_quantities, parse_quantities

    check_quantities(parse_quantities(problem.cfg.output), problem.pde, problem.box,
                     problem.shape, problem.time_axis)


def _check_stage_optimizers(cfg: Config, stage_conditions: list) -> None:
    """Each stage's optimizer may refuse the case (e.g. conditions without a residual form
    for a least-squares optimizer): ConfigError at set-up."""
    from ddpinn.training.optimizers import get_optimizer_class

    for i, (st, conds) in enumerate(zip(cfg.stages, stage_conditions)):
        try:
            get_optimizer_class(st.optimizer).check_case(st, conds, cfg, f"stages[{i}]")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def resolve_residual_weights(value, pde: PDE) -> tuple | None:
    """``loss.residual`` -> one weight per equation of ``pde``, or None for one number.

    A list needs one entry per equation; a table names equations (``PDE.equations``, or
    r0, r1, ...), unnamed ones weigh 1. Raises ConfigError naming the field.
    """
    if not isinstance(value, (list, dict)):
        return None
    try:
        names = pde.equation_names()
    except Exception as exc:
        raise ConfigError(f"field 'loss.residual' = {value!r} needs the names of the "
                          f"equations of PDE {pde.name!r}, but its residual could not be "
                          f"probed ({type(exc).__name__}: {exc}); set its 'equations' "
                          f"attribute") from None
    if pde.equations is not None:
        try:
            n_res = pde._probe_equations()
        except Exception:
            n_res = len(names)  # a residual the probe cannot evaluate: trust the names
        if n_res != len(names):
            raise ConfigError(f"field 'loss.residual' = {value!r}: PDE {pde.name!r} names "
                              f"{len(names)} equations ({', '.join(names)}) but its residual "
                              f"has {n_res}; fix its 'equations' attribute")
    listed = f"{len(names)} equation{'s' * (len(names) != 1)} ({', '.join(names)})"
    if isinstance(value, list):
        if len(value) != len(names):
            raise ConfigError(f"field 'loss.residual' = {value!r} has {len(value)} weights, "
                              f"but PDE {pde.name!r} has {listed}: give one weight per "
                              f"equation, a table {{name = weight}} or one number")
        return tuple(float(v) for v in value)
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ConfigError(f"field 'loss.residual.{unknown[0]}' names no equation of PDE "
                          f"{pde.name!r}; it has {listed}")
    return tuple(float(value.get(n, 1.0)) for n in names)


def _check_architecture(name) -> None:
    """Raise ConfigError unless ``network.architecture`` names a registered architecture or
    an importable ``"package.module:Name"``."""
    from ddpinn.nn.architectures import get_architecture

    if not isinstance(name, str):
        raise ConfigError(f"field 'network.architecture' = {name!r} has the wrong type: "
                          f"expected a string")
    try:
        get_architecture(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

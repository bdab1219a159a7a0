"""The ``[[stages]]`` blocks of a case file: their typed section and their validation.

Re-exported by :mod:`ddpinn.io.config`, which calls :func:`validate_stages` from its
``validate``; every message names the field, the value and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

from ddpinn.io.config_errors import ConfigError, check_choice


@dataclass
class StageSection:
    optimizer: str = "adam"
    steps: int = 1000  # the upper bound; the stopping rules below may end the stage earlier
    lr: Optional[float] = None  # default by optimizer: its adapter's default_lr
    schedule: str = "constant"
    decay_rate: float = 0.5
    decay_steps: int = 1000
    history: int = 50
    max_evals: int = 25
    damping: float = 1e-3  # gauss_newton: initial Levenberg-Marquardt damping lambda
    coupling: str = "block"  # gauss_newton: "block" (Jacobi) or "global" (PCG, coupled)
    cg_iterations: int = 20  # gauss_newton, coupling = "global": CG iterations per solve
    cg_tolerance: float = 1e-3  # ... and its relative residual at which CG stops
    precondition_every: int = 1  # ... steps between rebuilds of its preconditioner
    # interface conditions of this stage (default: the case's): a list or {space, time}
    conditions: Optional[Union[list, dict]] = None
    causal: bool = True  # causal weights in this stage (when [causal] chunks > 0)
    # points change in this stage (points.resample_every > 0): true (by points.resample),
    # false (fixed points), or a resampler's name for this stage alone (e.g. "uniform")
    resample: Union[bool, str] = True
    dtype: Optional[str] = None  # precision of this stage (default: case.dtype)
    # stopping rules (:mod:`ddpinn.training.stage_rules`); None: the rule is off
    target_loss: Optional[float] = None  # stop once the global loss is <= this
    min_improvement: Optional[float] = None  # stop when the best loss improved less than
    patience: Optional[int] = None  # this fraction over this many steps (default 100)
    max_minutes: Optional[float] = None  # wall-time limit of the stage, over restarts


DEFAULT_PATIENCE = 100

# (field, test, what is allowed) of the optional numbers of a stage
_RULE_BOUNDS = (
    ("target_loss", lambda v: v >= 0, "a number >= 0 (the loss at which the stage ends)"),
    ("min_improvement", lambda v: 0 <= v < 1,
     "a number in [0, 1) (the relative improvement of the best loss over 'patience' steps "
     "below which the stage ends)"),
    ("max_minutes", lambda v: v > 0, "a number > 0 (wall-time minutes of the stage)"),
)


def _error(path: str, value, allowed: str) -> ConfigError:
    return ConfigError(f"field {path!r} = {value!r} is not allowed: it must be {allowed}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_rules(path: str, st: StageSection) -> None:
    """Stopping rules: numbers in range; ``patience`` an integer >= 1. A rule given with
    only one of its two fields takes the other's default (patience 100, improvement 0)."""
    for key, ok, allowed in _RULE_BOUNDS:
        v = getattr(st, key)
        if v is None:
            continue
        if not _is_number(v) or not math.isfinite(v) or not ok(v):
            raise _error(path + key, v, allowed)
        setattr(st, key, float(v))
    p = st.patience
    if p is not None and (not isinstance(p, int) or isinstance(p, bool) or p < 1):
        raise _error(path + "patience", p, "an integer >= 1 (steps over which the best loss "
                                              "must improve by min_improvement)")
    if st.min_improvement is not None or p is not None:
        st.patience = DEFAULT_PATIENCE if p is None else p
        st.min_improvement = 0.0 if st.min_improvement is None else st.min_improvement


def optimizer_class(path: str, name):
    """The adapter class of an optimizer name (registered, or ``"package.module:ClassName"``,
    imported here), or a :class:`ConfigError` naming the choices."""
    from ddpinn.training.optimizers import get_optimizer_class, optimizer_names

    if isinstance(name, str) and ":" in name:
        try:
            return get_optimizer_class(name)
        except ValueError as exc:
            raise ConfigError(f"field {path!r}: {exc}") from None
    if name not in optimizer_names():
        raise ConfigError(f"field {path!r} = {name!r} is not allowed; choose one of: "
                          f"{', '.join(optimizer_names())}, or 'package.module:ClassName'")
    return get_optimizer_class(name)


def validate_stages(cfg, dtypes, resamplers) -> None:
    """Check and resolve every stage of ``cfg`` (lr and dtype defaults filled in).

    ``dtypes``, ``resamplers``: the allowed precision and resampler names. Raises
    ConfigError naming the field."""
    from ddpinn.training.schedules import SCHEDULES

    for i, st in enumerate(cfg.stages):
        path = f"stages[{i}]."
        optimizer = optimizer_class(path + "optimizer", st.optimizer)
        if st.lr is None:
            st.lr = optimizer.default_lr
        elif not _is_number(st.lr):
            raise ConfigError(f"field '{path}lr' = {st.lr!r} has the wrong type: "
                              f"expected a number")
        st.lr = float(st.lr)
        for key in ("lr", "decay_rate", "damping"):
            if not getattr(st, key) > 0:
                raise ConfigError(f"field '{path}{key}' = {getattr(st, key)!r} must be > 0")
        for key, low in (("steps", 0), ("decay_steps", 1), ("history", 1), ("max_evals", 1)):
            if getattr(st, key) < low:
                raise ConfigError(f"field '{path}{key}' = {getattr(st, key)!r} must be "
                                  f">= {low}")
        check_choice(path + "schedule", st.schedule, list(SCHEDULES))
        st.dtype = cfg.case.dtype if st.dtype is None else st.dtype
        check_choice(path + "dtype", st.dtype, list(dtypes))
        _check_rules(path, st)
        _check_coupling(path, st)
        _check_resample(path, st, cfg.points.resample_every, resamplers)


def _check_resample(path: str, st: StageSection, every: int, resamplers) -> None:
    """``resample``: true, false or one of the ``resamplers`` names (which needs
    ``points.resample_every`` = ``every`` >= 1)."""
    if isinstance(st.resample, bool):
        return
    if not isinstance(st.resample, str) or st.resample not in resamplers:
        raise _error(path + "resample", st.resample,
                     f"true, false or a resampler: {', '.join(resamplers)}")
    if every < 1:
        raise _error(path + "resample", st.resample, "true or false while "
                     f"points.resample_every = {every} (set the steps between updates)")


def stage_resampler(cfg, st: StageSection) -> Optional[str]:
    """The resampler that changes the points in stage ``st``, or None (fixed points)."""
    if st.resample is False or cfg.points.resample_every < 1:
        return None
    return cfg.points.resample if st.resample is True else st.resample


def resampler_fields(cfg) -> dict:
    """{field: resampler name} of every field that names one: ``points.resample``, then the
    stages' own (``stages[i].resample``), in the case file's order."""
    named = {"points.resample": cfg.points.resample}
    named.update((f"stages[{i}].resample", st.resample) for i, st in enumerate(cfg.stages)
                 if isinstance(st.resample, str))
    return named


def resamplers_named(cfg) -> set:
    """Every resampler the case names: ``points.resample`` and the stages' own."""
    return set(resampler_fields(cfg).values())


def _check_coupling(path: str, st: StageSection) -> None:
    """``coupling`` one of :data:`~ddpinn.training.gn_coupling.COUPLINGS` ("global" in
    gauss_newton stages only), ``cg_iterations`` an integer >= 1, ``cg_tolerance`` in
    (0, 1), ``precondition_every`` an integer >= 1 (above 1 with "global" only)."""
    from ddpinn.training.gn_coupling import COUPLINGS

    check_choice(path + "coupling", st.coupling, list(COUPLINGS))
    if st.coupling != "block" and st.optimizer != "gauss_newton":
        raise _error(path + "coupling", st.coupling, f"'block' for optimizer "
                     f"{st.optimizer!r} (the coupled step is gauss_newton's)")
    it = st.cg_iterations
    if not isinstance(it, int) or isinstance(it, bool) or it < 1:
        raise _error(path + "cg_iterations", it, "an integer >= 1 (CG iterations per solve)")
    tol = st.cg_tolerance
    if not _is_number(tol) or not 0 < tol < 1:
        raise _error(path + "cg_tolerance", tol, "a number in (0, 1) (the relative residual "
                                                  "at which CG stops)")
    st.cg_tolerance = float(tol)
    every = st.precondition_every
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise _error(path + "precondition_every", every, "an integer >= 1 (Gauss-Newton "
                                                          "steps between preconditioner builds)")
    if every > 1 and st.coupling != "global":
        raise _error(path + "precondition_every", every, "1 with coupling = "
                     f"{st.coupling!r} (it applies to the coupled step's preconditioner: "
                     "set coupling = 'global')")

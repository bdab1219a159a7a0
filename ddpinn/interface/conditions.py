"""Interface conditions: small pure functions of the two sides' values on an interface.

Each condition receives ``mine`` and ``other``, dicts of interface quantities shaped
(S, n, c) for S interface sides of n points. The shipped conditions are given in *residual
form*: they return the difference (S, n, c) that should vanish, and the per-side penalty
(S,), the mean over points of its squared norm, is derived from it (so that a least-squares
optimizer such as Gauss-Newton sees the same rows as the penalty). A plugin may instead
register a penalty ``fn(mine, other) -> (S,)`` only; it then works with the gradient
optimizers but not with those that need residuals. ``other`` is detached by the caller. A
condition is zero when the two sides agree (and, for the residual-type conditions, when they
satisfy the PDE).

Quantities (a condition declares which it needs; only those are computed and exchanged)
are the registry :data:`ddpinn.interface.quantities.QUANTITIES` (name -> width and
computation), re-exported here and from :mod:`ddpinn.interface`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from ddpinn.interface.quantities import QUANTITIES
from ddpinn.nn.batched import row_mean


@dataclass(frozen=True)
class Condition:
    """An interface condition.

    ``symmetric`` conditions penalise a difference of the two sides, P(a, b) = P(b, a);
    the others (``interface_residual``, ``residual_gradient``) look at one side only.
    """

    name: str
    needs: tuple
    fn: Callable
    doc: str
    symmetric: bool = True
    candidate: bool = True  # in METALIC's default candidate list (its nine conditions)
    # residual(mine, other) -> (S, n, c) whose mean squared norm over points is fn's penalty;
    # None for a condition registered as a penalty only
    residual: Callable | None = None


CONDITIONS: dict = {}

# XPINN's pair: average-solution continuity plus residual continuity. The one definition of
# the default: interface.conditions of a case (ddpinn.io.config) and METALIC's default arm.
DEFAULT_CONDITIONS = ("average_solution", "residual_continuity")


def condition(name: str, needs, symmetric: bool = True, candidate: bool = True,
              residual: bool = False):
    """Register interface condition ``name``.

    With ``residual=True`` the decorated ``fn(mine, other)`` returns the residual (S, n, c)
    and the penalty (S,) is its mean squared norm over the points (:func:`_mean_sq`);
    otherwise ``fn`` returns the penalty (S,) itself (no residual form)."""
    def deco(fn):
        penalty = _penalty_of(fn) if residual else fn
        CONDITIONS[name] = Condition(name, tuple(needs), penalty, (fn.__doc__ or "").strip(),
                                     symmetric, candidate, fn if residual else None)
        return fn
    return deco


def _penalty_of(residual: Callable) -> Callable:
    """The penalty (S,) of a residual-form condition."""
    def penalty(mine, other):
        return _mean_sq(residual(mine, other))
    penalty.__doc__ = residual.__doc__
    return penalty


def _mean_sq(diff: torch.Tensor) -> torch.Tensor:
    """(S, n, c) -> (S,): mean over points of the squared norm over components."""
    return row_mean(diff.pow(2).sum(-1), -1)


@condition("solution_continuity", needs=("u",), residual=True)
def solution_continuity(mine, other):
    """u_mine = u_other."""
    return mine["u"] - other["u"]


@condition("average_solution", needs=("u",), residual=True)
def average_solution(mine, other):
    """u_mine = (u_mine + u_other) / 2  (XPINN)."""
    return mine["u"] - 0.5 * (mine["u"] + other["u"])


@condition("interface_residual", needs=("res",), symmetric=False, residual=True)
def interface_residual(mine, other):
    """PDE residual of this side vanishes on the interface."""
    return mine["res"]


@condition("residual_continuity", needs=("res",), residual=True)
def residual_continuity(mine, other):
    """res_mine = res_other  (XPINN)."""
    return mine["res"] - other["res"]


@condition("flux_continuity", needs=("flux",), residual=True)
def flux_continuity(mine, other):
    """Normal flux f(u) . n equal on both sides  (cPINN)."""
    return mine["flux"] - other["flux"]


@condition("normal_derivative_continuity", needs=("dn",), residual=True)
def normal_derivative_continuity(mine, other):
    """du/dn equal on both sides."""
    return mine["dn"] - other["dn"]


@condition("second_normal_derivative_continuity", needs=("dnn",), residual=True)
def second_normal_derivative_continuity(mine, other):
    """d2u/dn2 equal on both sides."""
    return mine["dnn"] - other["dnn"]


@condition("tangential_second_derivative_continuity", needs=("dtt",), residual=True)
def tangential_second_derivative_continuity(mine, other):
    """d2u/dtau2 equal on both sides for every tangential axis tau."""
    return mine["dtt"] - other["dtt"]


@condition("residual_gradient", needs=("gres",), symmetric=False, residual=True)
def residual_gradient(mine, other):
    """Gradient of this side's residual vanishes on the interface  (gPINN)."""
    return mine["gres"]


@condition("upwind_solution", needs=("u",), symmetric=False, candidate=False, residual=True)
def upwind_solution(mine, other):
    """u_mine = u_other on the downstream (upper) side only; the upstream side is free.

    On a time interface the later slab takes the earlier slab's values as its initial
    condition and never pulls them back toward its own: information flows forward in time,
    as in time marching. Meant for time interfaces (``{time = ["upwind_solution"]}``).
    """
    down = mine["downstream"].to(mine["u"].dtype)[:, None, None]  # 0 or 1: squares to itself
    return (mine["u"] - other["u"]) * down


@condition("upwind_normal_derivative", needs=("dn",), symmetric=False, candidate=False,
           residual=True)
def upwind_normal_derivative(mine, other):
    """du/dn_mine = du/dn_other on the downstream (upper) side only.

    On a time interface: the later slab starts with the earlier slab's rate of change, not
    only its values (with ``upwind_solution``).
    """
    down = mine["downstream"].to(mine["dn"].dtype)[:, None, None]
    return (mine["dn"] - other["dn"]) * down


def get_condition(name: str, where: str = "interface.conditions") -> Condition:
    if name not in CONDITIONS:
        raise ValueError(f"field {where!r} names {name!r}, which is not an "
                         f"interface condition; choose from: {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


# -- condition-set sources: ``interface.conditions = "PREFIX:ARG"`` --------------------------
#: Resolvers registered by optional layers: prefix -> ``resolve(arg, pde_name, params)``
#: returning the condition names for a PDE with these parameters.
CONDITION_SOURCES: dict = {}
#: Known prefixes -> the module that registers their resolver when imported; the core never
#: imports these layers itself, only by name when a case asks for one.
CONDITION_SOURCE_MODULES = {"metalic": "ddpinn.metalic"}


def register_condition_source(prefix: str, resolve: Callable) -> Callable:
    """Register ``resolve(arg, pde_name, params) -> condition names`` for case strings
    ``interface.conditions = "PREFIX:ARG"``."""
    CONDITION_SOURCES[prefix] = resolve
    return resolve


def condition_source(prefix: str):
    """The resolver of ``prefix``, importing its module from :data:`CONDITION_SOURCE_MODULES`
    on first use; None when the prefix is unknown."""
    if prefix not in CONDITION_SOURCES and prefix in CONDITION_SOURCE_MODULES:
        importlib.import_module(CONDITION_SOURCE_MODULES[prefix])
    return CONDITION_SOURCES.get(prefix)


KINDS = ("space", "time")


@dataclass(frozen=True)
class ConditionSet:
    """The active interface conditions of each interface kind.

    Space interfaces lie between subdomains side by side in space, time interfaces between
    consecutive time slabs. A case gives one list for every interface, or a table
    ``{space = [...], time = [...]}`` with a set for each kind (METALIC can learn them apart).

    Iterating yields the union of the names (space's first, in their given order).
    """

    space: tuple
    time: tuple

    @classmethod
    def of(cls, value, where: str = "interface.conditions") -> "ConditionSet":
        """From a list (every interface) or a {space, time} table; ValueError naming ``where``."""
        if isinstance(value, ConditionSet):
            return value
        if isinstance(value, dict):
            extra = sorted(set(value) - set(KINDS))
            if extra:
                raise ValueError(f"field '{where}.{extra[0]}' is not an interface kind; a table "
                                 f"of condition lists takes: {', '.join(KINDS)}")
            missing = [k for k in KINDS if k not in value]
            if missing:
                raise ValueError(f"field {where!r} has no {missing[0]!r} list: give a set for "
                                 f"each of {', '.join(KINDS)} (or one list for every interface)")
            lists = {k: (value[k], f"{where}.{k}") for k in KINDS}
        elif isinstance(value, (list, tuple)):
            lists = {k: (value, where) for k in KINDS}
        else:
            raise ValueError(f"field {where!r} = {value!r} must be a list of condition names or "
                             f"a table {{space = [...], time = [...]}}")
        for names, at in lists.values():
            if not isinstance(names, (list, tuple)) or \
                    not all(isinstance(n, str) for n in names):
                raise ValueError(f"field {at!r} = {names!r} must be a list of condition names")
            if not names:
                raise ValueError(f"field {at!r} is empty: name at least one interface condition")
            for n in names:
                get_condition(n, at)
            if len(set(names)) != len(names):
                raise ValueError(f"field {at!r} = {list(names)!r} repeats a condition")
        return cls(tuple(lists["space"][0]), tuple(lists["time"][0]))

    @property
    def uniform(self) -> bool:
        """The same set on every interface."""
        return set(self.space) == set(self.time)

    @property
    def names(self) -> tuple:
        return tuple(dict.fromkeys(self.space + self.time))

    def kinds(self, name: str) -> tuple:
        """The interface kinds on which ``name`` is active."""
        return tuple(k for k in KINDS if name in getattr(self, k))

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)

    def __str__(self) -> str:
        if self.uniform:
            return ", ".join(self.space)
        return f"space: {', '.join(self.space)}; time: {', '.join(self.time)}"

    def as_config(self):
        """The case-file value: a list, or a {space, time} table."""
        if self.uniform:
            return list(self.space)
        return {"space": list(self.space), "time": list(self.time)}


def needed_quantities(names) -> tuple:
    """Union of what the named conditions need, always with ``u`` (for the mismatch
    metric), in the fixed order of :data:`QUANTITIES`."""
    need = {"u"}
    for n in names:
        need.update(get_condition(n).needs)
    return tuple(q for q in QUANTITIES if q in need)

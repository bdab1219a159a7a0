"""Contexts of the METALIC bandit: PDE parameters with ranges, standardised to [0, 1].

A context is a dict ``{name: value}`` of PDE parameters (``pde.params.<name>``). Each
parameter has a range ``[low, high]`` and a scale: ``linear`` maps ``low..high`` to ``0..1``,
``log`` maps ``log(low)..log(high)`` to ``0..1`` (for viscosities and diffusivities spanning
decades). Contexts are drawn uniformly in the standardised space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCALES = ("linear", "log")


class ContextError(ValueError):
    """A bad context specification or value; the message names the field."""


@dataclass(frozen=True)
class ContextParam:
    """One PDE parameter of the context, with its range and scale."""

    name: str
    low: float
    high: float
    scale: str = "linear"

    def __post_init__(self):
        where = f"contexts.{self.name}"
        for key in ("low", "high"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ContextError(f"field '{where}.{key}' = {v!r} must be a finite number")
        if not self.high > self.low:
            raise ContextError(f"field '{where}.high' = {self.high!r} must be greater than "
                               f"'{where}.low' = {self.low!r}")
        if self.scale not in SCALES:
            raise ContextError(f"field '{where}.scale' = {self.scale!r} is not allowed; "
                               f"choose one of: {', '.join(SCALES)}")
        if self.scale == "log" and self.low <= 0:
            raise ContextError(f"field '{where}.low' = {self.low!r} must be > 0 for "
                               f"scale = \"log\"")

    def _t(self, v):
        return np.log(v) if self.scale == "log" else np.asarray(v, dtype=float)

    def to_unit(self, value):
        lo, hi = self._t(self.low), self._t(self.high)
        return (self._t(value) - lo) / (hi - lo)

    def from_unit(self, z):
        lo, hi = self._t(self.low), self._t(self.high)
        v = lo + np.asarray(z, dtype=float) * (hi - lo)
        return np.exp(v) if self.scale == "log" else v


class ContextSpace:
    """The ordered context parameters of a campaign."""

    def __init__(self, params):
        self.params = tuple(params)
        if not self.params:
            raise ContextError("the campaign declares no contexts: add a [contexts.NAME] "
                               "table with low and high (a PDE parameter)")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ContextError(f"contexts {names!r} repeat a name")

    @property
    def names(self) -> tuple:
        return tuple(p.name for p in self.params)

    def __len__(self) -> int:
        return len(self.params)

    def standardise(self, context: dict, clip_warn=None) -> np.ndarray:
        """Context dict -> (n_params,) point in [0, 1]^d (values outside the range map
        outside [0, 1]; the model extrapolates)."""
        missing = [n for n in self.names if n not in context]
        if missing:
            raise ContextError(f"context lacks {', '.join(missing)} (the campaign's contexts "
                               f"are {', '.join(self.names)})")
        return np.array([float(p.to_unit(float(context[p.name]))) for p in self.params])

    def values(self, z) -> dict:
        """Point in [0, 1]^d -> context dict of plain floats."""
        z = np.asarray(z, dtype=float).reshape(-1)
        return {p.name: float(p.from_unit(zi)) for p, zi in zip(self.params, z)}

    def sample(self, rng: np.random.Generator) -> dict:
        """A context drawn uniformly in the standardised space."""
        return self.values(rng.random(len(self.params)))

    def in_range(self, context: dict) -> list:
        """Names of parameters outside their declared range."""
        return [p.name for p in self.params
                if not (min(p.low, p.high) - 1e-12 <= float(context[p.name]) <= p.high + 1e-12)]

    def to_dict(self) -> dict:
        return {p.name: {"low": p.low, "high": p.high, "scale": p.scale} for p in self.params}

    @classmethod
    def from_dict(cls, d: dict) -> "ContextSpace":
        return cls(ContextParam(n, float(v["low"]), float(v["high"]), v.get("scale", "linear"))
                   for n, v in d.items())


def parse_context(items, space: ContextSpace | None = None) -> dict:
    """``["nu=0.01", "k=2"]`` (or one ``"nu=0.01,k=2"``) -> ``{"nu": 0.01, "k": 2.0}``."""
    out = {}
    for item in items or []:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ContextError(f"context {part!r} must look like name=value")
            k, v = part.split("=", 1)
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise ContextError(f"context {part!r}: {v!r} is not a number") from None
    if space is not None:
        unknown = [k for k in out if k not in space.names]
        if unknown:
            raise ContextError(f"context names {', '.join(unknown)}, not a context of the "
                               f"campaign; its contexts are {', '.join(space.names)}")
    return out

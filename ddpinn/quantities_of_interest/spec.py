"""The ``[output]`` fields of quantities of interest: forces on boundary pieces, probes
(named points) and differences of a probed output between two probes.

::

    [output]
    forces = [ { tag = "cylinder", name = "cylinder", scale = 500.0 } ]
    probes = { front = [0.15, 0.2], back = [0.25, 0.2] }
    probe_differences = { delta_p = ["p", "front", "back"] }

A probe gives one coordinate per axis; in a time-dependent case it may give the space
coordinates alone: then it is a time series at the test grid's time samples (``probes.nc``),
and its value as a quantity is the one at the last time.

:func:`parse_quantities` checks what the case file alone can tell (types, names, numbers);
:func:`check_quantities` what needs the problem (boundary tags of the domain, probes inside
it, a PDE with velocity and pressure outputs and a viscosity ``nu``). Both raise
:class:`~ddpinn.io.config_errors.ConfigError` naming the field. Pure Python and numpy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ddpinn.io.config_errors import ConfigError

#: Quadrature points of a force integral (a fixed rule: the same on any rank count).
FORCE_POINTS = 2000
#: Seed of the quadrature points of force ``i``: FORCE_SEED + i.
FORCE_SEED = 20260
#: Names of the force components along x, y, z.
COMPONENTS = ("drag", "lift", "side")
#: Velocity outputs in order (the first ``dim`` of them), and the pressure.
VELOCITY, PRESSURE = ("u", "v", "w"), "p"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FORCE_KEYS = ("tag", "name", "scale", "points", "t")


@dataclass(frozen=True)
class ForceSpec:
    """The force of the fluid on the boundary piece ``tag``, times ``scale``.

    ``t``: the time it is evaluated at in a time-dependent problem (None: the domain's end).
    """

    tag: str
    name: str
    scale: float = 1.0
    points: int = FORCE_POINTS
    t: float | None = None

    def keys(self, dim: int) -> list:
        """Names of its values: ``<name>_drag``, ``<name>_lift`` [, ``<name>_side``]."""
        return [f"{self.name}_{c}" for c in COMPONENTS[:dim]]


@dataclass(frozen=True)
class Quantities:
    """Every quantity of interest of a case.

    forces : tuple of ForceSpec
    probes : dict name -> tuple of float, one coordinate per axis (space, then t); in a
        time-dependent case the space coordinates alone make a time series (``is_series``)
    differences : dict name -> (output, probe a, probe b): output at a minus at b
    """

    forces: tuple = ()
    probes: dict = None
    differences: dict = None

    def __post_init__(self):
        object.__setattr__(self, "probes", dict(self.probes or {}))
        object.__setattr__(self, "differences", dict(self.differences or {}))

    def __bool__(self) -> bool:
        return bool(self.forces or self.probes)

    def keys(self, dim: int, outputs) -> list:
        """Names of the values, in order: forces, ``<probe>_<output>``, differences."""
        out = [k for f in self.forces for k in f.keys(dim)]
        out += [f"{p}_{o}" for p in self.probes for o in outputs]
        return out + list(self.differences)


def _number(value, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not np.isfinite(value):
        raise ConfigError(f"field {path!r} = {value!r} must be a finite number")
    return float(value)


def _name(value, path: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"field {path!r} = {value!r} must be a name of letters, digits and "
                          f"'_' (it names an output column)")
    return value


def _force(i: int, spec) -> ForceSpec:
    path = f"output.forces[{i}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"field {path!r} = {spec!r} must be a table "
                          f"{{ tag = ..., name = ..., scale = ... }}")
    for k in spec:
        if k not in FORCE_KEYS:
            raise ConfigError(f"unknown field '{path}.{k}'; allowed: {', '.join(FORCE_KEYS)}")
    if "tag" not in spec:
        raise ConfigError(f"field '{path}.tag' is missing: name the boundary piece")
    tag = spec["tag"]
    if not isinstance(tag, str) or not tag:
        raise ConfigError(f"field '{path}.tag' = {tag!r} must be a boundary tag (a string)")
    name = _name(spec.get("name", tag), f"{path}.name")
    scale = _number(spec.get("scale", 1.0), f"{path}.scale")
    n = spec.get("points", FORCE_POINTS)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"field '{path}.points' = {n!r} must be a positive integer")
    t = None if spec.get("t") is None else _number(spec["t"], f"{path}.t")
    return ForceSpec(tag, name, scale, n, t)


def parse_quantities(output) -> Quantities:
    """The quantities of an :class:`~ddpinn.io.config.OutputSection` (fields ``forces``,
    ``probes``, ``probe_differences``); raises ConfigError naming the field."""
    forces = tuple(_force(i, s) for i, s in enumerate(output.forces))
    names = [f.name for f in forces]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"field 'output.forces[{i}].name' = {n!r} is used twice; give "
                              f"each force its own name")
    probes = {}
    for name, point in output.probes.items():
        path = f"output.probes.{name}"
        _name(name, path)
        if not isinstance(point, list) or not point:
            raise ConfigError(f"field {path!r} = {point!r} must be a list of coordinates")
        probes[name] = tuple(_number(c, f"{path}[{k}]") for k, c in enumerate(point))
    diffs = {}
    for name, entry in output.probe_differences.items():
        path = f"output.probe_differences.{name}"
        _name(name, path)
        if not (isinstance(entry, list) and len(entry) == 3 and
                all(isinstance(e, str) for e in entry)):
            raise ConfigError(f"field {path!r} = {entry!r} must be [output, probe a, probe b] "
                              f"(the output at a minus at b)")
        for e in entry[1:]:
            if e not in probes:
                raise ConfigError(f"field {path!r} names probe {e!r}; probes: "
                                  f"{', '.join(probes) or 'none (set output.probes)'}")
        diffs[name] = tuple(entry)
    return Quantities(forces, probes, diffs)


def check_quantities(q: Quantities, pde, box, shape=None, time_axis=None) -> None:
    """Raise ConfigError unless the quantities fit the problem.

    Parameters
    ----------
    q : Quantities
    pde : PDE (``outputs``, ``params``, ``name``)
    box : Box of the case (space axes, then t), ``names``, ``lower``, ``upper``
    shape : Shape or None (a box domain: tags ``x_lower``, ``x_upper``, ...)
    time_axis : int or None
    """
    dim = box.dim - (time_axis is not None)
    tags = tuple(shape.tags) if shape is not None else \
        tuple(f"{a}_{s}" for a in box.names[:dim] for s in ("lower", "upper"))
    for i, f in enumerate(q.forces):
        path = f"output.forces[{i}]"
        if f.tag not in tags:
            raise ConfigError(f"field '{path}.tag' = {f.tag!r} is not a boundary tag of the "
                              f"domain; its tags: {', '.join(tags)}")
        want = list(VELOCITY[:dim]) + [PRESSURE]
        if list(pde.outputs[:dim]) != want[:dim] or PRESSURE not in pde.outputs or \
                "nu" not in pde.params:
            raise ConfigError(f"field {path!r}: a force needs a flow PDE with outputs "
                              f"{', '.join(want)} and parameter 'nu'; PDE {pde.name!r} has "
                              f"outputs {', '.join(pde.outputs)} and parameters "
                              f"{', '.join(pde.params) or 'none'}")
        if f.t is not None and time_axis is None:
            raise ConfigError(f"field '{path}.t' = {f.t!r}: the case has no time axis")
        if f.t is not None and not box.lower[time_axis] <= f.t <= box.upper[time_axis]:
            raise ConfigError(f"field '{path}.t' = {f.t!r} must be a time of the domain, "
                              f"in [{box.lower[time_axis]}, {box.upper[time_axis]}]")
    space = [a for a in range(box.dim) if a != time_axis]
    for name, point in q.probes.items():
        path = f"output.probes.{name}"
        series = is_series(point, box.dim, time_axis)
        if len(point) != box.dim and not series:
            also = "" if time_axis is None else \
                f", or one per space axis ({', '.join(box.names[a] for a in space)}) for a " \
                f"time series"
            raise ConfigError(f"field {path!r} = {list(point)!r} needs one coordinate per axis "
                              f"({', '.join(box.names)}){also}")
        axes = space if series else list(range(box.dim))
        x = np.asarray(point, dtype=np.float64)
        lo, hi = np.asarray(box.lower, float)[axes], np.asarray(box.upper, float)[axes]
        tol = 1e-9 * np.maximum(1.0, hi - lo)
        inside = bool(np.all((x >= lo - tol) & (x <= hi + tol)))
        if inside and shape is not None:
            inside = bool(shape.inside((x if series else x[space])[None])[0])
        if not inside:
            raise ConfigError(f"field {path!r} = {list(point)!r} lies outside the domain")
    for name, (output, _, _) in q.differences.items():
        if output not in pde.outputs:
            raise ConfigError(f"field 'output.probe_differences.{name}' names output "
                              f"{output!r}; PDE {pde.name!r} has outputs "
                              f"{', '.join(pde.outputs)}")


def is_series(point, n_axes: int, time_axis=None) -> bool:
    """Whether a probe is a time series: in a time-dependent case (``time_axis`` not None) it
    gives the space coordinates only, one fewer than the ``n_axes`` axes."""
    return time_axis is not None and len(point) == n_axes - 1


def describe(q: Quantities, n_axes: int | None = None, time_axis=None) -> list:
    """Lines for ``ddpinn info``: what each quantity of interest is (``n_axes`` and
    ``time_axis`` of the case tell time-series probes apart)."""
    lines = []
    for f in q.forces:
        when = f" at t = {f.t:g}" if f.t is not None else ""
        lines.append(f"force {f.name!r}: on boundary {f.tag!r}{when}, scale {f.scale:g}, "
                     f"{f.points} quadrature points")
    for name, point in q.probes.items():
        series = n_axes is not None and is_series(point, n_axes, time_axis)
        lines.append(f"probe {name!r} at {list(point)}" +
                     (": time series (probes.nc), the value at the last time" if series else ""))
    for name, (o, a, b) in q.differences.items():
        lines.append(f"difference {name!r} = {o} at {a!r} - {o} at {b!r}")
    return lines

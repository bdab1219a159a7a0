"""The ``[[data]]`` tables of a case file: which file, what for, which columns.

A table reads, e.g.::

    [[data]]
    name = "probes"                     # optional, default "data<i>"
    file = "probes.csv"
    use = "observations"                # observations | boundary | reference
    fields = {u = "u_meas"}             # output -> column; a list ["u", "v"] reads the
                                        # outputs under their own names; absent: every output
                                        # that the file has
    axes = {t = "time"}                 # case axis -> column or coordinate; absent: same name
    noise = 0.01                        # or {u = 0.01}; observations only
    interpolation = "linear"            # linear | nearest | cubic (grids)
    fraction = 0.01                     # observations: the share of the points (grid nodes) used

:func:`parse_data_tables` checks them (keys, types, names against the case's axes and the
PDE's outputs) and raises one :class:`~ddpinn.io.config_errors.ConfigError` (a ValueError)
naming the field as ``data.<i>.<key>`` (``i`` counts the tables from 0). The files are not
opened here (see :func:`ddpinn.data.open_data`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ddpinn.io.config_errors import ConfigError

USES = ("observations", "boundary", "reference")
INTERPOLATIONS = ("linear", "nearest", "cubic")
KEYS = ("name", "file", "use", "fields", "axes", "noise", "interpolation", "fraction")


@dataclass(frozen=True)
class DataSpec:
    """One checked ``[[data]]`` table.

    name : str, unique among the tables (default ``f"data{i}"``)
    file : str, as written in the case file
    use : str, one of :data:`USES`
    fields : dict output -> column/variable name in the file; {} = every output of the PDE
        that the file has under its own name
    axes : dict case axis -> column/coordinate variable name, one entry per case axis, in
        the case's axis order
    noise : dict output -> standard deviation (> 0); {} = none. A single number in the table
        gives every field read (every output when ``fields`` is {}) that noise.
    interpolation : str, one of :data:`INTERPOLATIONS`
    fraction : float in [0, 1], observations: the share of its points (or grid nodes) each
        expert keeps (1: all)
    """

    name: str
    file: str
    use: str
    fields: dict
    axes: dict
    noise: dict
    interpolation: str = "linear"
    fraction: float = 1.0


def parse_data_tables(tables, axes: tuple, outputs: tuple) -> list:
    """Check the ``[[data]]`` tables of a case file.

    Parameters
    ----------
    tables : list of dict, the TOML tables (None or [] when the case has none)
    axes : tuple of str, the case's axes in order (``("x", "y", "t")``)
    outputs : tuple of str, the PDE's outputs (``("u", "v", "p")``)

    Returns
    -------
    list of DataSpec, in the tables' order

    Raises
    ------
    ConfigError (a ValueError)
        naming the field ``data.<i>.<key>``, its value and what is allowed.
    """
    if tables is None:
        return []
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("field 'data' must be an array of tables ([[data]] blocks)")
    specs, used = [], {}
    for i, table in enumerate(tables):
        spec = _parse_table(f"data.{i}", i, table, tuple(axes), tuple(outputs))
        if spec.name in used:
            raise ConfigError(f"field 'data.{i}.name' = {spec.name!r}: the name is already "
                              f"used by data.{used[spec.name]}; names must be unique")
        used[spec.name] = i
        specs.append(spec)
    return specs


def _parse_table(path: str, i: int, table: dict, axes: tuple, outputs: tuple) -> DataSpec:
    unknown = [k for k in table if k not in KEYS]
    if unknown:
        raise ConfigError(f"field '{path}.{unknown[0]}' is not known; a [[data]] table takes "
                          f"{', '.join(KEYS)}")
    for key in ("file", "use"):
        if key not in table:
            raise ConfigError(f"field '{path}.{key}' is missing: every [[data]] table needs "
                              f"'file' and 'use'")
    file = _name(path + ".file", table["file"])
    use = _choice(path + ".use", _name(path + ".use", table["use"]), USES)
    name = _name(path + ".name", table.get("name", f"data{i}"))
    interpolation = _choice(path + ".interpolation",
                            _name(path + ".interpolation", table.get("interpolation",
                                                                     "linear")),
                            INTERPOLATIONS)
    fields = _fields(path + ".fields", table.get("fields", {}), outputs)
    axes_map = _axes(path + ".axes", table.get("axes", {}), axes)
    noise = _noise(path, table.get("noise"), use, fields, outputs)
    fraction = _fraction(path, table.get("fraction"), use)
    return DataSpec(name, file, use, fields, axes_map, noise, interpolation, fraction)


def _fraction(path: str, value, use: str) -> float:
    if value is None:
        return 1.0
    if use != "observations":
        raise ConfigError(f"field '{path}.fraction' = {value!r}: a fraction of the nodes is "
                          f"only taken for use = 'observations' (this table has use = {use!r})")
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 <= value <= 1.0:
        raise ConfigError(f"field '{path}.fraction' = {value!r} must be a number in [0, 1]")
    return float(value)


def _wrong_type(path: str, value, expected: str) -> ConfigError:
    return ConfigError(f"field {path!r} = {value!r} has the wrong type: expected {expected}")


def _name(path: str, value) -> str:
    if not isinstance(value, str):
        raise _wrong_type(path, value, "a string")
    if not value.strip():
        raise ConfigError(f"field {path!r} = {value!r} must not be empty")
    return value


def _choice(path: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ConfigError(f"field {path!r} = {value!r}: must be one of {', '.join(allowed)}")
    return value


def _fields(path: str, value, outputs: tuple) -> dict:
    expected = "a table output -> column name or a list of outputs"
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise _wrong_type(path, value, expected)
        value = {v: v for v in value}
    if not isinstance(value, dict):
        raise _wrong_type(path, value, expected)
    for key, column in value.items():
        if key not in outputs:
            raise ConfigError(f"field '{path}.{key}' names no output of the PDE; its outputs "
                              f"are {', '.join(outputs)}")
        _name(f"{path}.{key}", column)
    return {k: value[k] for k in outputs if k in value}


def _axes(path: str, value, axes: tuple) -> dict:
    if not isinstance(value, dict):
        raise _wrong_type(path, value, "a table case axis -> column name")
    for key, column in value.items():
        if key not in axes:
            raise ConfigError(f"field '{path}.{key}' names no axis of the case; its axes "
                              f"are {', '.join(axes)}")
        _name(f"{path}.{key}", column)
    mapped = {a: value.get(a, a) for a in axes}
    seen = {}
    for a, column in mapped.items():
        if column in seen:
            raise ConfigError(f"field '{path}.{a}' = {column!r}: axes {seen[column]} and {a} "
                              f"would both read {column!r}")
        seen[column] = a
    return mapped


def _sigma(path: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(path, value, "a number > 0")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"field {path!r} = {value!r} must be a finite number > 0")
    return float(value)


def _noise(path: str, value, use: str, fields: dict, outputs: tuple) -> dict:
    if value is None:
        return {}
    if use != "observations":
        raise ConfigError(f"field '{path}.noise' = {value!r}: noise is only given for "
                          f"use = 'observations' (this table has use = {use!r})")
    names = tuple(fields) or outputs
    if not isinstance(value, dict):
        sigma = _sigma(path + ".noise", value)
        return {k: sigma for k in names}
    for key, sigma in value.items():
        if key not in names:
            read = "reads" if fields else "has the outputs"
            raise ConfigError(f"field '{path}.noise.{key}' names no field of this table; it "
                              f"{read} {', '.join(names)}")
        _sigma(f"{path}.noise.{key}", sigma)
    return {k: float(value[k]) for k in names if k in value}

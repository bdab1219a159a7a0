"""Case-file parts that describe the domain's shape, its boundary conditions and the cuts of
its decomposition.

The shape is checked (and STL files read) when the case is loaded, before anything is
written; the boundary tables are checked against the PDE and the shape's tags by
:func:`ddpinn.problem.build_problem`, which knows both.
"""
from __future__ import annotations

from pathlib import Path

from ddpinn.io.config_errors import ConfigError


def domain_from_shape(domain: dict, base_dir) -> dict:
    """``[domain]`` with a ``shape``: the shape checked and its bounding box as lower/upper
    (which the case then does not give). The shape is kept as data with STL paths made
    absolute, so the config stays plain TOML data."""
    from ddpinn.geometry.spec import shape_from_spec

    domain = dict(domain)
    if not isinstance(domain["shape"], dict):
        raise ConfigError(f"field 'domain.shape' = {domain['shape']!r} must be a table")
    try:
        shape = shape_from_spec(domain["shape"], "domain.shape", base_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key, box in (("lower", shape.lower), ("upper", shape.upper)):
        # A run's resolved config.toml carries the bounding box it derived: accept it back.
        given = domain.get(key)
        if given is not None and not (isinstance(given, list) and len(given) == len(box)
                                      and all(isinstance(v, (int, float)) and
                                              abs(float(v) - float(b)) <= 1e-12 * (1 + abs(b))
                                              for v, b in zip(given, box))):
            raise ConfigError(f"field 'domain.{key}' = {given!r} and 'domain.shape' are both "
                              f"given: the shape's bounding box ({[float(b) for b in box]}) "
                              f"is the domain's extent; remove 'domain.{key}'")
    if shape.volume_fraction(shape.lower, shape.upper) <= 0.0:
        raise ConfigError("field 'domain.shape' describes an empty domain: no part of its "
                          "bounding box lies inside it (check what a difference removes or "
                          "that the shapes of an intersection overlap)")
    domain["lower"] = [float(v) for v in shape.lower]
    domain["upper"] = [float(v) for v in shape.upper]
    if base_dir is not None:
        domain["shape"] = absolute_files(domain["shape"], Path(base_dir))
    return domain


def absolute_files(spec, base: Path):
    """A shape spec with every ``file`` made absolute against ``base``."""
    if isinstance(spec, dict):
        out = {k: absolute_files(v, base) for k, v in spec.items()}
        if isinstance(out.get("file"), str) and not Path(out["file"]).is_absolute():
            out["file"] = str((base / out["file"]).resolve())
        return out
    if isinstance(spec, list):
        return [absolute_files(v, base) for v in spec]
    return spec


def data_tables(value, base_dir=None) -> list:
    """``[[data]]``: a list of tables, checked against the PDE later (ddpinn.data). A file
    found beside the case file, in the working directory or the data directory is recorded
    by its absolute path, so a run's resolved config.toml finds it again from anywhere."""
    from ddpinn.data.inputs import resolve_data_path

    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError("field 'data' must be an array of tables ([[data]] blocks)")
    out = []
    for table in value:
        table = dict(table)
        if isinstance(table.get("file"), str):
            found = resolve_data_path(table["file"], base_dir)
            if found is not None:
                table["file"] = str(found)
        out.append(table)
    return out


def boundary_tables(value) -> list:
    """``[[boundary]]``: a list of tables, each checked against the PDE and the domain's
    tags later (ddpinn.problem, which knows both)."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError("field 'boundary' must be an array of tables ([[boundary]] blocks)")
    return [dict(v) for v in value]


def check_cuts(cfg) -> None:
    """``decomposition.cuts``: a table of axis name -> grid[a] - 1 increasing numbers (their
    place inside the domain is checked where the domain's box is known)."""
    for name, pos in cfg.decomposition.cuts.items():  # a table: the typed load checks that
        path = f"decomposition.cuts.{name}"
        if name not in cfg.axis_names:
            raise ConfigError(f"field {path!r} names no axis; axes: "
                              f"{', '.join(cfg.axis_names)}")
        g = cfg.decomposition.grid[cfg.axis_names.index(name)]
        if not isinstance(pos, list) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                            for v in pos):
            raise ConfigError(f"field {path!r} = {pos!r} must be a list of numbers")
        if len(pos) != g - 1:
            raise ConfigError(f"field {path!r} has {len(pos)} positions, but "
                              f"'decomposition.grid' gives axis {name!r} {g} cells: it needs "
                              f"{g - 1} inner cut positions")
        if any(b <= a for a, b in zip(pos, pos[1:])):
            raise ConfigError(f"field {path!r} = {pos!r} must increase strictly")

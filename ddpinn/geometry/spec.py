"""Case-file tables -> shapes: ``shape_from_spec({"type": "disk", ...})``.

Each ``type`` has a builder in :data:`SHAPE_TYPES`; a bad table raises ``ValueError`` naming
the exact field (``domain.shape.of[1].radius``), its value and what is allowed.
"""
from __future__ import annotations

import math
from pathlib import Path

from ddpinn.geometry.csg import Difference, Intersection, Union
from ddpinn.geometry.primitives import Ball, Cuboid, Cylinder, Disk, Interval, Polygon, \
    Rectangle
from ddpinn.geometry.shapes import Shape


def _fail(path, key, value, allowed):
    raise ValueError(f"field '{path}.{key}' = {value!r} must be {allowed}")


def _check_keys(spec: dict, path: str, allowed: set) -> None:
    unknown = sorted(set(spec) - allowed - {"type"})
    if unknown:
        raise ValueError(f"field '{path}.{unknown[0]}' is not known for type "
                         f"{spec.get('type')!r}: allowed {sorted(allowed)}")


def _get(spec, path, key, default=...):
    if key not in spec:
        if default is ...:
            raise ValueError(f"field '{path}.{key}' is missing")
        return default
    return spec[key]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(spec, path, key, n=None, default=...):
    v = _get(spec, path, key, default)
    if _is_number(v) and n == 1:
        return [float(v)]
    if not (isinstance(v, (list, tuple)) and all(_is_number(e) for e in v)
            and (n is None or len(v) == n)):
        _fail(path, key, v, f"a list of {n} numbers" if n else "a list of numbers")
    return [float(e) for e in v]


def _positive(spec, path, key):
    v = _get(spec, path, key)
    if not (_is_number(v) and v > 0):
        _fail(path, key, v, "a positive number")
    return float(v)


def _tag(spec, path, key, default):
    v = _get(spec, path, key, default)
    if not (isinstance(v, str) and v):
        _fail(path, key, v, "a non-empty string")
    return v


def _tag_table(spec, path, allowed):
    v = _get(spec, path, "tags", {})
    if not isinstance(v, dict):
        _fail(path, "tags", v, f"a table with keys among {sorted(allowed)}")
    for k, t in v.items():
        if k not in allowed:
            raise ValueError(f"field '{path}.tags.{k}' is not known: allowed {sorted(allowed)}")
        if not (isinstance(t, str) and t):
            _fail(f"{path}.tags", k, t, "a non-empty string")
    return v


def _aligned(cls, dim):
    faces = {f"{a}_{s}" for a in "xyz"[:dim] for s in ("lower", "upper")}

    def build(spec, path, base_dir):
        _check_keys(spec, path, {"lower", "upper", "tags"})
        lower = _numbers(spec, path, "lower", dim)
        upper = _numbers(spec, path, "upper", dim)
        for a, (lo, hi) in enumerate(zip(lower, upper)):
            if not hi > lo:
                raise ValueError(f"field '{path}.upper' = {upper} must exceed "
                                 f"'{path}.lower' = {lower} on every axis")
        return cls(lower, upper, _tag_table(spec, path, faces))
    return build


def _round(cls, dim):
    def build(spec, path, base_dir):
        _check_keys(spec, path, {"center", "radius", "tag"})
        return cls(_numbers(spec, path, "center", dim), _positive(spec, path, "radius"),
                   _tag(spec, path, "tag", cls.default_tag))
    return build


def _polygon(spec, path, base_dir):
    _check_keys(spec, path, {"vertices", "tag", "tags"})
    v = _get(spec, path, "vertices")
    if not (isinstance(v, list) and len(v) >= 3 and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(map(_is_number, p))
            for p in v)):
        _fail(path, "vertices", v, "a list of at least 3 points [x, y]")
    if "tag" in spec and "tags" in spec:
        raise ValueError(f"fields '{path}.tag' and '{path}.tags' exclude each other")
    if "tags" in spec:
        tags = spec["tags"]
        if not (isinstance(tags, list) and len(tags) == len(v)
                and all(isinstance(t, str) and t for t in tags)):
            _fail(path, "tags", tags, f"a list of {len(v)} strings, one per edge")
    else:
        tags = _tag(spec, path, "tag", "polygon")
    try:
        return Polygon(v, tags)
    except ValueError as err:
        raise ValueError(f"field '{path}.vertices': {err}") from None


def _cylinder(spec, path, base_dir):
    _check_keys(spec, path, {"center", "radius", "height", "axis", "tags"})
    axis = _get(spec, path, "axis", "z")
    if axis not in ("x", "y", "z"):
        _fail(path, "axis", axis, "one of 'x', 'y', 'z'")
    return Cylinder(_numbers(spec, path, "center", 3), _positive(spec, path, "radius"),
                    _positive(spec, path, "height"), axis,
                    _tag_table(spec, path, {"side", "bottom", "top"}))


def _stl(spec, path, base_dir):
    from ddpinn.geometry.mesh import StlShape

    _check_keys(spec, path, {"file", "tag"})
    file = _get(spec, path, "file")
    if not (isinstance(file, str) and file):
        _fail(path, "file", file, "a file name")
    p = Path(file)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.is_file():
        _fail(path, "file", file, f"an existing file (looked for {str(p)!r})")
    try:
        return StlShape(p, _tag(spec, path, "tag", "stl"))
    except ValueError as err:
        raise ValueError(f"field '{path}.file' = {file!r}: {err}") from None


def _composite(cls):
    def build(spec, path, base_dir):
        _check_keys(spec, path, {"of"})
        members = _get(spec, path, "of")
        if not (isinstance(members, list) and len(members) >= 2):
            _fail(path, "of", members, "a list of at least 2 shapes")
        shapes = [shape_from_spec(m, f"{path}.of[{i}]", base_dir)
                  for i, m in enumerate(members)]
        try:
            return cls(shapes)
        except ValueError as err:
            raise ValueError(f"field '{path}.of': {err}") from None
    return build


#: type name -> builder(spec, path, base_dir) -> Shape
SHAPE_TYPES = {
    "interval": _aligned(Interval, 1),
    "rectangle": _aligned(Rectangle, 2),
    "box": _aligned(Cuboid, 3),
    "disk": _round(Disk, 2),
    "ball": _round(Ball, 3),
    "polygon": _polygon,
    "cylinder": _cylinder,
    "stl": _stl,
    "union": _composite(Union),
    "difference": _composite(Difference),
    "intersection": _composite(Intersection),
}


def shape_from_spec(spec: dict, path: str = "domain.shape", base_dir=None) -> Shape:
    """Build a shape from its case-file table.

    Parameters
    ----------
    spec : dict -- with key ``type`` (one of :data:`SHAPE_TYPES`) and that type's fields
    path : str -- where the table sits in the case file, for error messages
    base_dir : str or Path, optional -- directory relative STL file names start from
    """
    if not isinstance(spec, dict):
        raise ValueError(f"field '{path}' = {spec!r} must be a table with a 'type'")
    kind = spec.get("type")
    if kind not in SHAPE_TYPES:
        raise ValueError(f"field '{path}.type' = {kind!r} must be one of "
                         f"{sorted(SHAPE_TYPES)}")
    return SHAPE_TYPES[kind](spec, path, base_dir)

"""Primitive shapes with exact signed distances: intervals, rectangles and boxes, disks and
balls, polygons, cylinders."""
from __future__ import annotations

import numpy as np

from ddpinn.geometry.pieces import AlignedFace, CylinderSide, DiskCap, Segment, Sphere
from ddpinn.geometry.shapes import Shape

SPACE_AXES = ("x", "y", "z")


def _vector(name, value, dim=None) -> np.ndarray:
    v = np.atleast_1d(np.asarray(value, dtype=float))
    if v.ndim != 1 or (dim is not None and len(v) != dim) or not np.all(np.isfinite(v)):
        want = f"{dim} finite numbers" if dim else "finite numbers"
        raise ValueError(f"{name} = {np.asarray(value).tolist()} must be {want}")
    return v


def _positive(name, value) -> float:
    if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} = {value!r} must be a positive number")
    return float(value)


def unique(tags) -> tuple:
    """Tags in order of first appearance."""
    return tuple(dict.fromkeys(tags))


class AlignedBox(Shape):
    """The closed box ``[lower, upper]`` in 1, 2 or 3 dimensions.

    Parameters
    ----------
    lower, upper : sequence of float, shape (dim,)
    tags : dict, optional
        Face name -> tag, face names ``x_lower``, ``x_upper``, ``y_lower``, ... (the default
        tag of a face is its name).
    """

    dims = (1, 2, 3)

    def __init__(self, lower, upper, tags=None):
        self.lower = _vector("lower", lower)
        self.upper = _vector("upper", upper, len(self.lower))
        self.dim = len(self.lower)
        if self.dim not in self.dims:
            raise ValueError(f"{type(self).__name__} needs {self.dims} dimensions, "
                             f"got lower = {self.lower.tolist()}")
        if np.any(self.upper <= self.lower):
            raise ValueError(f"upper = {self.upper.tolist()} must exceed lower = "
                             f"{self.lower.tolist()} on every axis")
        names = [f"{SPACE_AXES[a]}_{s}" for a in range(self.dim) for s in ("lower", "upper")]
        tags = dict(tags or {})
        unknown = sorted(set(tags) - set(names))
        if unknown:
            raise ValueError(f"unknown face(s) {unknown} in tags: allowed {names}")
        self.face_tags = [str(tags.get(f, f)) for f in names]
        self.tags = unique(self.face_tags)

    def sdf(self, x):
        x = np.asarray(x, float)
        center, half = 0.5 * (self.lower + self.upper), 0.5 * (self.upper - self.lower)
        q = np.abs(x - center) - half
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        return outside + np.minimum(q.max(axis=1), 0.0)

    def _make_pieces(self):
        out = []
        for k, tag in enumerate(self.face_tags):
            a, side = divmod(k, 2)
            lo, hi = self.lower.copy(), self.upper.copy()
            lo[a] = hi[a] = self.upper[a] if side else self.lower[a]
            out.append(AlignedFace(tag, a, 1 if side else -1, lo, hi))
        return out


class Interval(AlignedBox):
    """``[lower, upper]`` on the x axis; tags ``x_lower``, ``x_upper`` by default."""

    dims = (1,)


class Rectangle(AlignedBox):
    """An axis-aligned rectangle (2D)."""

    dims = (2,)


class Cuboid(AlignedBox):
    """An axis-aligned box (3D); case files call it ``box``."""

    dims = (3,)


class Round(Shape):
    """A disk (2D) or ball (3D): ``|x - center| <= radius``, one tag."""

    dims = (2, 3)
    default_tag = "round"

    def __init__(self, center, radius, tag=None):
        self.center = _vector("center", center)
        self.dim = len(self.center)
        if self.dim not in self.dims:
            raise ValueError(f"center = {self.center.tolist()} must have {self.dims[0]} "
                             f"entries for a {type(self).__name__.lower()}")
        self.radius = _positive("radius", radius)
        self.lower, self.upper = self.center - self.radius, self.center + self.radius
        self.tags = (str(tag or self.default_tag),)

    def sdf(self, x):
        return np.linalg.norm(np.asarray(x, float) - self.center, axis=1) - self.radius

    def _make_pieces(self):
        return [Sphere(self.tags[0], self.center, self.radius)]


class Disk(Round):
    dims = (2,)
    default_tag = "disk"


class Ball(Round):
    dims = (3,)
    default_tag = "ball"


def segment_distance(x, a, b) -> np.ndarray:
    """Distances (n, E) from points x (n, d) to segments a[e] -> b[e] (E, d)."""
    ab = b - a  # (E, d)
    ap = x[:, None, :] - a[None]  # (n, E, d)
    t = np.clip(np.einsum("ned,ed->ne", ap, ab) / np.einsum("ed,ed->e", ab, ab), 0.0, 1.0)
    return np.linalg.norm(ap - t[..., None] * ab[None], axis=-1)


class Polygon(Shape):
    """A simple polygon (2D), vertices in order (either orientation).

    Parameters
    ----------
    vertices : array (V, 2), V >= 3
    tag : str or sequence of str
        One tag for all edges, or one per edge (edge i joins vertex i to vertex i+1).
    """

    dim = 2

    def __init__(self, vertices, tag="polygon"):
        v = np.asarray(vertices, dtype=float)
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3 or not np.all(np.isfinite(v)):
            raise ValueError(f"vertices must be at least 3 points [x, y], got "
                             f"{np.asarray(vertices).tolist()}")
        self.vertices = v
        self.a, self.b = v, np.roll(v, -1, axis=0)
        cross = self.a[:, 0] * self.b[:, 1] - self.b[:, 0] * self.a[:, 1]
        area = 0.5 * cross.sum()
        if abs(area) <= 1e-14 * np.ptp(v, axis=0).max() ** 2:
            raise ValueError("vertices enclose no area")
        self.area = abs(area)
        edge_tags = [tag] * len(v) if isinstance(tag, str) else list(tag)
        if len(edge_tags) != len(v):
            raise ValueError(f"tags has {len(edge_tags)} entries but the polygon has "
                             f"{len(v)} edges")
        self.edge_tags = [str(t) for t in edge_tags]
        self.tags = unique(self.edge_tags)
        d = self.b - self.a
        outward = np.stack([d[:, 1], -d[:, 0]], axis=1) * (1.0 if area > 0 else -1.0)
        self.normals = outward / np.linalg.norm(outward, axis=1, keepdims=True)
        self.lower, self.upper = v.min(axis=0), v.max(axis=0)

    def sdf(self, x):
        x = np.asarray(x, float)
        dist = segment_distance(x, self.a, self.b).min(axis=1)
        xa, ya = self.a[:, 0], self.a[:, 1]
        xb, yb = self.b[:, 0], self.b[:, 1]
        px, py = x[:, :1], x[:, 1:]
        straddle = (ya > py) != (yb > py)  # (n, E)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross_x = xa + (py - ya) * (xb - xa) / (yb - ya)
        odd = np.sum(straddle & (px < cross_x), axis=1) % 2 == 1
        return np.where(odd, -dist, dist)

    def _make_pieces(self):
        return [Segment(t, a, b, n) for t, a, b, n in
                zip(self.edge_tags, self.a, self.b, self.normals)]


class Cylinder(Shape):
    """A solid circular cylinder (3D).

    Parameters
    ----------
    center : (3,) -- centre of the base disk
    radius, height : positive float
    axis : "x", "y" or "z"
    tags : dict, optional -- tags of ``side``, ``bottom`` and ``top`` (default: those names)
    """

    dim = 3

    def __init__(self, center, radius, height, axis="z", tags=None):
        self.center = _vector("center", center, 3)
        self.radius = _positive("radius", radius)
        self.height = _positive("height", height)
        if axis not in SPACE_AXES:
            raise ValueError(f"axis = {axis!r} must be one of {list(SPACE_AXES)}")
        self.axis = SPACE_AXES.index(axis)
        tags = dict(tags or {})
        unknown = sorted(set(tags) - {"side", "bottom", "top"})
        if unknown:
            raise ValueError(f"unknown piece(s) {unknown} in tags: allowed "
                             f"['side', 'bottom', 'top']")
        self.piece_tags = {k: str(tags.get(k, k)) for k in ("side", "bottom", "top")}
        self.tags = unique(self.piece_tags.values())
        self.cross = [a for a in range(3) if a != self.axis]
        self.lower, self.upper = self.center.copy(), self.center.copy()
        self.lower[self.cross] -= self.radius
        self.upper[self.cross] += self.radius
        self.upper[self.axis] += self.height

    def sdf(self, x):
        x = np.asarray(x, float)
        rho = np.linalg.norm(x[:, self.cross] - self.center[self.cross], axis=1)
        s = x[:, self.axis] - self.center[self.axis]
        q = np.stack([rho - self.radius, np.abs(s - 0.5 * self.height) - 0.5 * self.height],
                     axis=1)
        return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)

    def _make_pieces(self):
        top = self.center.copy()
        top[self.axis] += self.height
        t = self.piece_tags
        return [CylinderSide(t["side"], self.axis, self.center, self.radius, self.height),
                DiskCap(t["bottom"], self.axis, self.center, self.radius, -1),
                DiskCap(t["top"], self.axis, top, self.radius, +1)]

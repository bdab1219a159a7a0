"""Boundary pieces of shapes: parts of a boundary that can be sampled uniformly by measure.

A piece knows its tag, its bounding box, its measure (length in 2D, area in 3D, a count of
one for the end point of an interval) and how to draw uniform points with unit outward
normals. ``clip(lower, upper)`` returns a piece covering at least ``piece ∩ cell`` (exactly
that for flat axis-aligned faces and segments, the whole piece for curved ones) or ``None``
when the two cannot meet, so small cells only draw from what can reach them.
"""
from __future__ import annotations

import copy
import math

import numpy as np


def boxes_overlap(lo1, hi1, lo2, hi2, tol=0.0) -> bool:
    """Whether two closed boxes ``[lo1, hi1]`` and ``[lo2, hi2]`` (each (dim,)) meet."""
    return bool(np.all(np.asarray(lo1) <= np.asarray(hi2) + tol)
                and np.all(np.asarray(lo2) <= np.asarray(hi1) + tol))


def box_distance_range(center, lower, upper):
    """Smallest and largest distance from ``center`` (dim,) to points of the box."""
    c, lo, hi = (np.asarray(v, float) for v in (center, lower, upper))
    near = np.clip(c, lo, hi)
    far = np.where(np.abs(c - lo) > np.abs(c - hi), lo, hi)
    return float(np.linalg.norm(c - near)), float(np.linalg.norm(c - far))


class Piece:
    """Base class. Attributes: ``tag`` (str), ``lower``/``upper`` (dim,), ``measure``."""

    tag: str
    lower: np.ndarray
    upper: np.ndarray
    measure: float

    def clip(self, lower, upper):
        """A piece covering ``self ∩ [lower, upper]``, or None when they do not meet."""
        return self if boxes_overlap(self.lower, self.upper, lower, upper) else None

    param_dim: int  # number of parameters of the piece (its dimension)

    def from_unit(self, u: np.ndarray):
        """Map parameters u (n, param_dim) uniform in the unit cube to points uniform by
        measure: (points (n, dim), unit outward normals (n, dim))."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator):
        """Uniform points by measure: (points (n, dim), unit outward normals (n, dim))."""
        return self.from_unit(rng.random((int(n), self.param_dim)))

    def accept(self, pts, normals) -> np.ndarray:
        """Which sampled points (n, dim) belong to the boundary: all, for a plain piece."""
        return np.ones(len(pts), bool)


class AlignedFace(Piece):
    """The face ``x[axis] = coord`` of an axis-aligned box, tangential extent ``[lo, hi]``.

    ``side`` is -1 (normal towards -axis) or +1. In 1D the face is a point of measure 1.
    """

    def __init__(self, tag, axis, side, lo, hi):
        self.tag, self.axis, self.side = tag, int(axis), int(side)
        self.lower, self.upper = np.asarray(lo, float), np.asarray(hi, float)
        widths = np.delete(self.upper - self.lower, self.axis)
        self.measure = float(np.prod(widths)) if widths.size else 1.0
        self.param_dim = len(self.lower) - 1

    def clip(self, lower, upper):
        lo = np.maximum(self.lower, lower)
        hi = np.minimum(self.upper, upper)
        c = self.lower[self.axis]
        if not lower[self.axis] <= c <= upper[self.axis]:
            return None
        lo[self.axis] = hi[self.axis] = c
        if np.any(np.delete(hi - lo, self.axis) <= 0):
            return None
        return AlignedFace(self.tag, self.axis, self.side, lo, hi)

    def from_unit(self, u):
        pts = np.broadcast_to(self.lower, (len(u), len(self.lower))).copy()
        cross = [a for a in range(len(self.lower)) if a != self.axis]
        pts[:, cross] += u * (self.upper - self.lower)[cross]
        normals = np.zeros_like(pts)
        normals[:, self.axis] = self.side
        return pts, normals


class Segment(Piece):
    """A straight segment ``a -> b`` in 2D with a fixed unit normal."""

    def __init__(self, tag, a, b, normal):
        self.tag = tag
        self.a, self.b = np.asarray(a, float), np.asarray(b, float)
        self.normal = np.asarray(normal, float)
        self.lower, self.upper = np.minimum(self.a, self.b), np.maximum(self.a, self.b)
        self.measure = float(np.linalg.norm(self.b - self.a))
        self.param_dim = 1

    def clip(self, lower, upper):
        # Liang-Barsky: the parameter interval [t0, t1] of a + t (b - a) inside the box.
        d = self.b - self.a
        t0, t1 = 0.0, 1.0
        for k in range(len(d)):
            if d[k] == 0.0:
                if not lower[k] <= self.a[k] <= upper[k]:
                    return None
                continue
            ta, tb = (lower[k] - self.a[k]) / d[k], (upper[k] - self.a[k]) / d[k]
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t1 <= t0:
            return None
        return Segment(self.tag, self.a + t0 * d, self.a + t1 * d, self.normal)

    def from_unit(self, u):
        return self.a + u[:, :1] * (self.b - self.a), \
            np.broadcast_to(self.normal, (len(u), 2)).copy()


def unit_vectors(u):
    """Directions uniform on the unit circle (u (n, 1)) or sphere (u (n, 2)): (n, 2 or 3)."""
    phi = 2.0 * math.pi * u[:, -1]
    if u.shape[1] == 1:
        return np.stack([np.cos(phi), np.sin(phi)], axis=1)
    z = 1.0 - 2.0 * u[:, 0]  # uniform height gives uniform area (Archimedes)
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def turn_range(center, lower, upper):
    """Angles (in turns, ``phi / 2 pi``) under which the 2D box ``[lower, upper]`` is seen
    from ``center``: (start, stop), stop - start < 1/2; (0, 1) when the box holds centre."""
    c, lo, hi = (np.asarray(v, float) for v in (center, lower, upper))
    if np.all(lo <= c) and np.all(c <= hi):
        return 0.0, 1.0
    mid = 0.5 * (lo + hi) - c
    ref = math.atan2(mid[1], mid[0])
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]]) - c
    rel = np.arctan2(corners[:, 1], corners[:, 0]) - ref
    rel = (rel + math.pi) % (2 * math.pi) - math.pi
    return (ref + rel.min()) / (2 * math.pi), (ref + rel.max()) / (2 * math.pi)


class Ranged(Piece):
    """A piece drawn from a sub-box ``[u_lo, u_hi]`` of its parameters (a cell cuts a curved
    piece to the angles and heights that can reach it); ``full`` is the whole piece's
    measure, the parametrisation being uniform by measure."""

    full: float

    def _init_range(self, full, param_dim):
        self.full, self.param_dim = float(full), param_dim
        self.u_lo, self.u_hi = np.zeros(param_dim), np.ones(param_dim)
        self.measure = self.full

    def _narrow(self, u_lo, u_hi):
        if np.any(np.asarray(u_hi) <= np.asarray(u_lo)):
            return None
        out = copy.copy(self)
        out.u_lo, out.u_hi = np.asarray(u_lo, float), np.asarray(u_hi, float)
        out.measure = self.full * float(np.prod(out.u_hi - out.u_lo))
        return out

    def from_unit(self, u):
        return self._from_param(self.u_lo + u * (self.u_hi - self.u_lo))


class Sphere(Ranged):
    """The circle (2D) or sphere (3D) ``|x - center| = radius``; normals point away.
    Parameters: (turn) in 2D, (height, turn) in 3D, height ``u`` at ``z = 1 - 2u``."""

    def __init__(self, tag, center, radius):
        self.tag, self.center, self.radius = tag, np.asarray(center, float), float(radius)
        self.lower, self.upper = self.center - radius, self.center + radius
        dim = len(self.center)
        self._init_range(2 * math.pi * radius if dim == 2 else 4 * math.pi * radius ** 2,
                         dim - 1)

    def clip(self, lower, upper):
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        near, far = box_distance_range(self.center, lower, upper)
        if not near <= self.radius <= far:
            return None
        if np.any(self.u_lo != 0) or np.any(self.u_hi != 1):
            return self  # clipped before: keep it (rejection does the rest)
        t0, t1 = turn_range(self.center[:2], lower[:2], upper[:2])
        if len(self.center) == 2:
            return self._narrow([t0], [t1])
        z = np.clip((np.array([lower[2], upper[2]]) - self.center[2]) / self.radius, -1, 1)
        return self._narrow([(1 - z[1]) / 2, t0], [(1 - z[0]) / 2, t1])

    def _from_param(self, u):
        v = unit_vectors(u)
        return self.center + self.radius * v, v


def _frame(axis: int):
    """The two axes across ``axis`` (3D)."""
    return [a for a in range(3) if a != axis]


class CylinderSide(Ranged):
    """Lateral surface of a cylinder along ``axis``: base ``center`` (3,), radius, height.
    Parameters: (height fraction, turn)."""

    def __init__(self, tag, axis, center, radius, height):
        self.tag, self.axis = tag, int(axis)
        self.center, self.radius, self.height = np.asarray(center, float), radius, height
        self.cross = _frame(self.axis)
        self.lower, self.upper = self.center.copy(), self.center.copy()
        self.lower[self.cross] -= radius
        self.upper[self.cross] += radius
        self.upper[self.axis] += height
        self._init_range(2 * math.pi * radius * height, 2)

    def clip(self, lower, upper):
        cr, a = self.cross, self.axis
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        if not boxes_overlap(self.lower, self.upper, lower, upper):
            return None
        near, far = box_distance_range(self.center[cr], lower[cr], upper[cr])
        if not near <= self.radius <= far:
            return None
        if np.any(self.u_lo != 0) or np.any(self.u_hi != 1):
            return self
        t0, t1 = turn_range(self.center[cr], lower[cr], upper[cr])
        h = np.clip((np.array([lower[a], upper[a]]) - self.center[a]) / self.height, 0, 1)
        return self._narrow([h[0], t0], [h[1], t1])

    def _from_param(self, u):
        v = unit_vectors(u[:, 1:])
        pts = np.empty((len(u), 3))
        normals = np.zeros((len(u), 3))
        pts[:, self.cross] = self.center[self.cross] + self.radius * v
        pts[:, self.axis] = self.center[self.axis] + u[:, 0] * self.height
        normals[:, self.cross] = v
        return pts, normals


class DiskCap(Piece):
    """A flat disk across ``axis`` (3D) at ``center``, normal ``side`` (+-1) along axis."""

    def __init__(self, tag, axis, center, radius, side):
        self.tag, self.axis, self.side = tag, int(axis), int(side)
        self.center, self.radius = np.asarray(center, float), float(radius)
        self.cross = _frame(self.axis)
        self.lower, self.upper = self.center.copy(), self.center.copy()
        self.lower[self.cross] -= radius
        self.upper[self.cross] += radius
        self.measure = math.pi * radius ** 2
        self.param_dim = 2

    def clip(self, lower, upper):
        if not lower[self.axis] <= self.center[self.axis] <= upper[self.axis]:
            return None
        cr = self.cross
        near, _ = box_distance_range(self.center[cr], np.asarray(lower)[cr],
                                     np.asarray(upper)[cr])
        return self if near <= self.radius else None

    def from_unit(self, u):
        r = self.radius * np.sqrt(u[:, :1])
        pts = np.broadcast_to(self.center, (len(u), 3)).copy()
        pts[:, self.cross] += r * unit_vectors(u[:, 1:])
        normals = np.zeros((len(u), 3))
        normals[:, self.axis] = self.side
        return pts, normals


class Triangles(Piece):
    """A set of oriented triangles (F, 3, 3) in 3D, sampled by area; normals from the
    right-hand rule of each triangle's vertex order."""

    def __init__(self, tag, triangles):
        self.tag = tag
        self.triangles = np.asarray(triangles, float)
        cross = np.cross(self.triangles[:, 1] - self.triangles[:, 0],
                         self.triangles[:, 2] - self.triangles[:, 0])
        norm = np.linalg.norm(cross, axis=1)
        keep = norm > 0
        self.triangles, cross, norm = self.triangles[keep], cross[keep], norm[keep]
        self.areas = 0.5 * norm
        self.normals = cross / norm[:, None]
        self.tri_lower = self.triangles.min(axis=1)
        self.tri_upper = self.triangles.max(axis=1)
        self.lower, self.upper = self.tri_lower.min(axis=0), self.tri_upper.max(axis=0)
        self.measure = float(self.areas.sum())
        self.cumulative = np.cumsum(self.areas) / self.measure
        self.param_dim = 3

    def clip(self, lower, upper):
        hit = np.all(self.tri_lower <= np.asarray(upper), axis=1) & \
            np.all(self.tri_upper >= np.asarray(lower), axis=1)
        if not hit.any():
            return None
        return self if hit.all() else Triangles(self.tag, self.triangles[hit])

    def from_unit(self, u):
        which = np.minimum(np.searchsorted(self.cumulative, u[:, 0], side="right"),
                           len(self.areas) - 1)
        r1, r2 = np.sqrt(u[:, 1]), u[:, 2]
        t = self.triangles[which]
        pts = ((1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1]
               + (r1 * r2)[:, None] * t[:, 2])
        return pts, self.normals[which].copy()


class Filtered(Piece):
    """A piece of a child shape seen from a composite: normals optionally flipped, and only
    the points that ``keep(points, normals) -> bool (n,)`` accepts belong to the boundary."""

    def __init__(self, piece, keep, flip=False):
        self.piece, self.keep, self.flip = piece, keep, flip
        self.tag, self.lower, self.upper = piece.tag, piece.lower, piece.upper
        self.measure, self.param_dim = piece.measure, piece.param_dim

    def clip(self, lower, upper):
        inner = self.piece.clip(lower, upper)
        return None if inner is None else Filtered(inner, self.keep, self.flip)

    def from_unit(self, u):
        pts, normals = self.piece.from_unit(u)
        return pts, (-normals if self.flip else normals)

    def accept(self, pts, normals) -> np.ndarray:
        """Which of the points (n, dim) with the normals ``sample`` gave (n, dim) are on
        the composite's boundary."""
        ok = self.piece.accept(pts, -normals if self.flip else normals)
        return ok & self.keep(pts, normals)

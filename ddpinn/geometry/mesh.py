"""Closed triangle surfaces read from STL files (with ``trimesh``).

Inside test and signed distance need no optional package: the sign comes from the
generalised winding number (sum of the triangles' solid angles), the distance from a
vectorised point-triangle distance, both in chunks of points.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ddpinn.geometry.pieces import Triangles
from ddpinn.geometry.shapes import Shape

#: Number of (point, triangle) pairs handled at once.
CHUNK = 1 << 20


def _chunks(n_points: int, n_tri: int):
    step = max(1, CHUNK // max(n_tri, 1))
    return [slice(i, min(i + step, n_points)) for i in range(0, n_points, step)]


def winding_number(x: np.ndarray, tri: np.ndarray, band: float | None = None):
    """Generalised winding number (n,) of points x (n, 3) for triangles tri (F, 3, 3):
    1 inside a closed outward-oriented surface, 0 outside (Van Oosterom-Strackee).

    With ``band`` given, also returns bool (n,): whether the point lies within ``band`` of
    the surface (exact distances only for the pairs whose nearest vertex is close enough).
    """
    out = np.empty(len(x))
    near = np.zeros(len(x), bool)
    t = [[tri[:, k, i] for i in range(3)] for k in range(3)]  # t[vertex][axis] (F,)
    reach = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=-1).max(axis=1)  # (F,)
    for sl in _chunks(len(x), len(tri)):
        p = [x[sl, i, None] for i in range(3)]  # (m, 1) each
        ax, ay, az = (t[0][i] - p[i] for i in range(3))
        bx, by, bz = (t[1][i] - p[i] for i in range(3))
        cx, cy, cz = (t[2][i] - p[i] for i in range(3))
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        den = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc
               + (ax * cx + ay * cy + az * cz) * lb + (bx * cx + by * cy + bz * cz) * la)
        out[sl] = np.arctan2(det, den).sum(axis=1) / (2.0 * math.pi)
        if band is not None:
            # A point within `band` of a triangle is within band + longest edge of each vertex.
            i, f = np.nonzero(np.minimum(np.minimum(la, lb), lc) <= reach + band)
            if len(i):
                xs = x[sl][i]
                d = np.linalg.norm(xs - closest_on_triangles(xs, tri[f]), axis=1)
                hit = np.zeros(sl.stop - sl.start, bool)
                hit[i[d <= band]] = True
                near[sl] = hit
    return out if band is None else (out, near)


def closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Closest points (k, 3) of triangles tri (k, 3, 3) to points p (k, 3), pairwise
    (closest-point regions of Ericson, Real-Time Collision Detection, 5.1.5)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac = b - a, c - a
    ap, bp, cp = p - a, p - b, p - c

    def dot(u, v):
        return np.einsum("ki,ki->k", u, v)
    d1, d2, d3, d4, d5, d6 = (dot(ap, ab), dot(ap, ac), dot(bp, ab), dot(bp, ac),
                              dot(cp, ab), dot(cp, ac))
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        # Inside the face: barycentric projection; the regions below override it.
        denom = va + vb + vc
        q = a + (vb / denom)[:, None] * ab + (vc / denom)[:, None] * ac
        regions = [
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), lambda: a + (d1 / (d1 - d3))[:, None] * ab),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), lambda: a + (d2 / (d2 - d6))[:, None] * ac),
            ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
             lambda: b + ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None] * (c - b)),
            ((d1 <= 0) & (d2 <= 0), lambda: a),
            ((d3 >= 0) & (d4 <= d3), lambda: b),
            ((d6 >= 0) & (d5 <= d6), lambda: c),
        ]
        for mask, point in regions:
            if mask.any():
                q = np.where(mask[:, None], point(), q)
    return q


def triangle_distance(x: np.ndarray, tri: np.ndarray, within: float = np.inf) -> np.ndarray:
    """Unsigned distance (n,) from points x (n, 3) to the nearest of the triangles (F, 3, 3).

    Only (point, triangle) pairs that bounding spheres cannot rule out are computed exactly.
    With ``within`` finite, distances beyond it are reported as ``inf`` (a cheap band test).
    """
    centre = tri.mean(axis=1)  # (F, 3)
    radius = np.linalg.norm(tri - centre[:, None], axis=-1).max(axis=1)  # (F,)
    out = np.full(len(x), np.inf)
    for sl in _chunks(len(x), len(tri)):
        r = np.sqrt(((x[sl, None, :] - centre[None]) ** 2).sum(-1))  # (m, F)
        lower = r - radius
        bound = np.minimum((r + radius).min(axis=1), within)  # (m,) no nearer than this
        i, f = np.nonzero(lower <= bound[:, None])
        if not len(i):
            continue
        d = np.linalg.norm(x[sl][i] - closest_on_triangles(x[sl][i], tri[f]), axis=1)
        best = np.full(sl.stop - sl.start, np.inf)
        np.minimum.at(best, i, d)
        out[sl] = np.where(best <= within, best, np.inf)
    return out


class StlShape(Shape):
    """The solid bounded by a closed triangle surface (3D), one tag.

    Parameters
    ----------
    file : str or Path -- an STL file (any format ``trimesh`` reads)
    tag : str, default "stl"

    Raises
    ------
    ValueError
        ``"<file>: not a closed surface"`` when the mesh is not watertight.
    """

    dim = 3

    def __init__(self, file, tag="stl"):
        import trimesh  # optional dependency, needed only for meshes

        path = Path(file)
        if not path.is_file():
            raise ValueError(f"STL file {str(path)!r} does not exist")
        mesh = trimesh.load(str(path), force="mesh", process=True)
        if len(mesh.faces) == 0 or not mesh.is_watertight:
            raise ValueError(f"{path}: not a closed surface (the mesh is not watertight)")
        tri = np.asarray(mesh.triangles, dtype=float)
        volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
        if volume < 0:  # inward-oriented file: turn every triangle around
            tri = tri[:, ::-1]
        self.file, self.triangles, self.volume = path, tri, abs(float(volume))
        self.tags = (str(tag),)
        self.lower, self.upper = tri.reshape(-1, 3).min(axis=0), tri.reshape(-1, 3).max(axis=0)

    def _inside(self, x, tol):
        w, near = winding_number(x, self.triangles, band=abs(tol))
        inner = w > 0.5
        return (inner | near) if tol >= 0 else (inner & ~near)

    def sdf(self, x):
        x = np.asarray(x, float)
        dist = triangle_distance(x, self.triangles)
        return np.where(winding_number(x, self.triangles) > 0.5, -dist, dist)

    def _make_pieces(self):
        return [Triangles(self.tags[0], self.triangles)]

"""Closed triangle surfaces read from STL files (with ``trimesh``).

Inside test and signed distance need no optional package (no spatial index): the sign
comes from the parity of the crossings of a ray in a fixed generic direction (only the
triangles whose shadow covers the point are tested; points whose ray grazes an edge fall back
to the generalised winding number, a sum of solid angles), the distance from a vectorised
point-triangle distance pruned by plane and bounding-sphere bounds; all in chunks of points.
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


def winding_number(x: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Generalised winding number (n,) of points x (n, 3) for triangles tri (F, 3, 3):
    1 inside a closed outward-oriented surface, 0 outside (Van Oosterom-Strackee)."""
    out = np.empty(len(x))
    t = [[tri[:, k, i] for i in range(3)] for k in range(3)]  # t[vertex][axis] (F,)
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
    return out


def _ray_frame() -> np.ndarray:
    """Orthonormal rows (e1, e2, d): d a fixed direction generic to grids and meshes."""
    d = np.array([0.2873, 0.1571, 0.9449])
    d /= np.linalg.norm(d)
    e1 = np.cross(d, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(d, e1), d])


RAY_FRAME = _ray_frame()
#: Barycentric margin under which a ray counts as grazing an edge (then: winding number).
GRAZE = 1e-9


def crossing_parity(x: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Inside test (n,) bool for points x (n, 3) of the closed surface tri (F, 3, 3): odd
    number of crossings of the ray from each point along ``RAY_FRAME[2]``."""
    px, pt = x @ RAY_FRAME.T, tri @ RAY_FRAME.T  # (n, 3), (F, 3, 3): shadow coords, height
    lo, hi = pt[:, :, :2].min(axis=1), pt[:, :, :2].max(axis=1)  # (F, 2)
    count = np.zeros(len(x), np.int64)
    graze = np.zeros(len(x), bool)
    for sl in _chunks(len(x), len(tri)):
        q = px[sl]
        cover = ((q[:, :1] >= lo[:, 0]) & (q[:, :1] <= hi[:, 0])
                 & (q[:, 1:2] >= lo[:, 1]) & (q[:, 1:2] <= hi[:, 1]))  # (m, F)
        i, f = np.nonzero(cover)
        a, b, c = pt[f, 0], pt[f, 1], pt[f, 2]
        v0, v1, v2 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2], q[i, :2] - a[:, :2]
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
            v = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        w = 1.0 - u - v
        above = a[:, 2] + u * (b[:, 2] - a[:, 2]) + v * (c[:, 2] - a[:, 2]) > q[i, 2]
        smallest = np.minimum(np.minimum(u, v), w)
        hit = (den != 0) & (smallest >= 0) & above
        count[sl] += np.bincount(i[hit], minlength=sl.stop - sl.start)
        edge = (den != 0) & (np.abs(smallest) < GRAZE) & above
        graze[sl] |= np.bincount(i[edge], minlength=sl.stop - sl.start) > 0
    inside = count % 2 == 1
    if graze.any():
        inside[graze] = winding_number(x[graze], tri) > 0.5
    return inside


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


def _lower_bounds(x: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Lower bounds (m, F) of the distances from points x (m, 3) to triangles (F, 3, 3):
    the larger of the distance to the triangle's plane and to its bounding sphere."""
    centre = tri.mean(axis=1)  # (F, 3)
    radius = np.linalg.norm(tri - centre[:, None], axis=-1).max(axis=1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    sphere = np.sqrt(np.maximum(np.sum(x * x, axis=1)[:, None] - 2 * x @ centre.T
                                + np.sum(centre * centre, axis=1)[None], 0.0)) - radius
    plane = np.abs(x @ normal.T - np.einsum("fi,fi->f", normal, centre)[None])
    return np.maximum(sphere, plane)


def _pair_distances(x, tri, i, f, n):
    """Smallest distance (n,) over the pairs (point i, triangle f); inf where none."""
    best = np.full(n, np.inf)
    if len(i):
        d = np.linalg.norm(x[i] - closest_on_triangles(x[i], tri[f]), axis=1)
        np.minimum.at(best, i, d)
    return best


def triangle_distance(x: np.ndarray, tri: np.ndarray, within: float = np.inf) -> np.ndarray:
    """Unsigned distance (n,) from points x (n, 3) to the nearest of the triangles (F, 3, 3).

    Exact distances only for the pairs the lower bounds (plane, bounding sphere) cannot rule
    out against the best of each point's few most promising triangles. With ``within``
    finite, distances beyond it are reported as ``inf`` (a cheap band test).
    """
    out = np.full(len(x), np.inf)
    k = min(4, len(tri))
    slack = 1e-12 * float(np.ptp(tri.reshape(-1, 3), axis=0).max())
    box_lo, box_hi = tri.min(axis=1), tri.max(axis=1)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    offset = np.einsum("fi,fi->f", normal, tri[:, 0])[None]
    for sl in _chunks(len(x), len(tri)):
        xs = x[sl]
        if np.isfinite(within):  # band test: the triangle's box and plane must be near
            reach = float(within) + slack
            close = np.ones((len(xs), len(tri)), bool)
            for a in range(3):
                close &= (xs[:, a, None] >= box_lo[:, a] - reach) & \
                    (xs[:, a, None] <= box_hi[:, a] + reach)
            close &= np.abs(xs @ normal.T - offset) <= reach
            i, f = np.nonzero(close)
        else:
            lower = _lower_bounds(xs, tri)  # (m, F)
            first = np.argpartition(lower, k - 1, axis=1)[:, :k]
            bound = _pair_distances(xs, tri, np.repeat(np.arange(len(xs)), k),
                                    first.reshape(-1), len(xs))
            # (a bound and a distance computed differently may differ in the last bits)
            i, f = np.nonzero(lower <= bound[:, None] * (1 + 1e-9) + slack)
        best = _pair_distances(xs, tri, i, f, len(xs))
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
        inner = crossing_parity(x, self.triangles)
        near = np.isfinite(triangle_distance(x, self.triangles, within=abs(tol)))
        return (inner | near) if tol >= 0 else (inner & ~near)

    def _solid(self, x):
        return crossing_parity(x, self.triangles)

    def _classify(self, x, half):
        near = np.isfinite(triangle_distance(x, self.triangles, within=half + self.tol))
        return np.where(near, np.nan, crossing_parity(x, self.triangles).astype(float))

    def sdf(self, x):
        x = np.asarray(x, float)
        dist = triangle_distance(x, self.triangles)
        return np.where(crossing_parity(x, self.triangles), -dist, dist)

    def _make_pieces(self):
        return [Triangles(self.tags[0], self.triangles)]

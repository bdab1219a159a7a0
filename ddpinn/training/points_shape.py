"""Collocation points of experts on a domain with a shape, and their boundary conditions.

The counterpart of :func:`ddpinn.training.points.build_points` for a decomposition cut by a
:class:`~ddpinn.geometry.shapes.Shape` (or a box whose faces carry ``[[boundary]]``
conditions). Every expert's points are a pure function of (seed, sid, epoch), drawn inside
its cell and the shape. Counts follow the part of the cell inside the domain: interior and
data points the inside volume, boundary points the boundary measure in the cell; every kept
interface gets the configured number of points, drawn on the part of its face inside the
domain from the interface's own key.

Rows of one expert: [interior | boundary | initial | data | interfaces | padding]; when no
condition reads a derivative (Dirichlet and initial values only), [interior | interfaces |
padding] and then a value-only block [boundary | initial | data | padding] that the step
evaluates by a plain forward pass (``PointBatch.value_rows``), so boundary data cost a
forward pass, not the PDE's derivatives. Boundary rows carry their conditions in a
:class:`BoundaryRows` block: entry k of expert e reads row ``rows[e, k]`` and asks
``sum_j A u_j + b (grad u . direction) = target`` (one entry per point and condition on its
tag).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddpinn.boundary import condition_rows, needs_gradient
from ddpinn.boundary.kinds import INITIAL_TAG
from ddpinn.training.points import (TAG_BOUNDARY, TAG_DATA, TAG_INTERFACE, TAG_INTERIOR,
                                    PointBatch, rng_for)

# Fewest points of a kind an expert gets when it has any part of that kind at all.
MIN_POINTS = 8
# Interface points are drawn in rounds of candidates on the face; a face whose part inside
# the domain is this small a fraction gets its points still, just from more rounds.
MAX_ROUNDS = 200


@dataclass
class BoundaryRows:
    """Boundary conditions of the local experts, one entry per (point, condition).

    rows : Tensor (E, K) long -- the row of ``PointBatch.x`` the entry reads (0 on padding)
    A : Tensor (E, K, m, m);  b : Tensor (E, K, m);  direction : Tensor (E, K, d)
    target, w : Tensor (E, K, m) -- value and weight (0: output not constrained, padding)
    needs_gradient : bool -- some entry has b != 0
    """

    rows: torch.Tensor
    A: torch.Tensor
    b: torch.Tensor
    direction: torch.Tensor
    target: torch.Tensor
    w: torch.Tensor
    needs_gradient: bool

    @property
    def nbytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in (
            self.rows, self.A, self.b, self.direction, self.target, self.w)))


@dataclass(frozen=True)
class ShapeCounts:
    """Points per subdomain of the whole decomposition (rank-independent), each (S,)."""

    interior: np.ndarray
    boundary: np.ndarray
    initial: np.ndarray
    data: np.ndarray
    interfaces: np.ndarray  # interface sides of each subdomain
    n_interface: int  # points per interface
    entries: np.ndarray  # boundary-condition entries (points x conditions on their tags)
    # boundary, initial and data rows in a trailing value-only block (no condition reads a
    # derivative there)
    values_apart: bool = False

    @property
    def rows(self) -> np.ndarray:
        """Points of every subdomain (S,)."""
        return (self.interior + self.boundary + self.initial + self.data
                + self.n_interface * self.interfaces)

    @property
    def value_points(self) -> np.ndarray:
        """Boundary, initial and data points of every subdomain (S,)."""
        return self.boundary + self.initial + self.data

    @property
    def first_interface(self) -> np.ndarray:
        """First interface row of every subdomain (S,)."""
        return self.interior if self.values_apart else self.interior + self.value_points

    @property
    def value_block(self) -> int:
        """Rows of the trailing value-only block (the most over the subdomains; 0: none)."""
        return int(self.value_points.max()) if self.values_apart else 0

    @property
    def layout_rows(self) -> int:
        """Rows N of every expert's batch: the derivative block, padded to the most over
        the subdomains, then the value-only block."""
        if not self.values_apart:
            return int(self.rows.max())
        return int((self.interior + self.n_interface * self.interfaces).max()) + self.value_block


def conditions_per_tag(conditions, tags) -> dict:
    """tag -> list of the conditions that act on it."""
    return {t: [c for c in conditions if t in c.tags] for t in tags}


def shape_counts(decomp, points_cfg, time_axis, conditions) -> ShapeCounts:
    """Points of every subdomain of a cut decomposition (pure, the same on every rank)."""
    frac = np.asarray(decomp.volume_fraction, float)
    measure = np.asarray(decomp.boundary_measure, float)
    space = [a for a in range(decomp.box.dim) if a != time_axis]
    width = (decomp.upper - decomp.lower)[:, space]
    # One face of the cell's space part: the boundary points of a face lying whole on the
    # boundary are points.boundary, as on a box domain.
    face = np.prod(width, axis=1)[:, None] / width if width.shape[1] > 1 else np.ones_like(width)
    face = face.mean(axis=1)

    def scaled(n, part):
        return np.where(part > 0, np.maximum(np.ceil(n * part), min(n, MIN_POINTS)), 0
                        ).astype(np.int64)

    interior = scaled(points_cfg.interior, frac)
    boundary = scaled(points_cfg.boundary, measure / face)
    by_tag = conditions_per_tag(conditions, decomp.shape.tags + (INITIAL_TAG,))
    initial = np.zeros_like(interior)
    if time_axis is not None and by_tag[INITIAL_TAG]:
        first = decomp.index[:, time_axis] == 0
        initial = np.where(first, scaled(points_cfg.boundary, frac), 0)
    per_space_point = max([len(by_tag[t]) for t in decomp.shape.tags] + [0])
    entries = boundary * per_space_point + initial * len(by_tag[INITIAL_TAG])
    data = scaled(points_cfg.data, frac) if points_cfg.data else np.zeros_like(interior)
    return ShapeCounts(interior, boundary, initial, data, decomp.interface_counts(),
                       int(points_cfg.interface), entries, not needs_gradient(conditions))


def space_columns(d: int, time_axis) -> list:
    return [a for a in range(d) if a != time_axis]


def _in_cell(shape, sample, n, rng, lower, upper, time_axis):
    """Points of a space sampler in the cell (lower, upper) (d,), with time uniform in the
    cell's time range: (n, d), plus whatever else the sampler returns for its points."""
    d = len(lower)
    space = space_columns(d, time_axis)
    out = sample(n, rng, lower[space], upper[space])
    pts_space, extra = (out, ()) if isinstance(out, np.ndarray) else (out[0], out[1:])
    x = np.empty((n, d))
    x[:, space] = pts_space
    if time_axis is not None:
        x[:, time_axis] = lower[time_axis] + rng.random(n) * (upper[time_axis]
                                                              - lower[time_axis])
    return x, extra


def interface_face_points(shape, itf, n, seed, epoch, time_axis) -> np.ndarray:
    """``n`` points of interface ``itf`` on the part of its face inside ``shape``: (n, d),
    the interface's normal coordinate that of its lower side (both sides draw the same)."""
    rng = rng_for(seed, TAG_INTERFACE, epoch, *itf.seed_key())
    lo = np.asarray(itf.face_box.lower, float)
    width = np.asarray(itf.face_box.upper, float) - lo
    space = space_columns(len(lo), time_axis)
    found, have = [], 0
    for _ in range(MAX_ROUNDS):
        cand = lo + rng.random((max(2 * n, 64), len(lo))) * width
        cand[:, itf.axis] = itf.coord_lower
        keep = cand[shape.inside(cand[:, space])]
        found.append(keep)
        have += len(keep)
        if have >= n:
            return np.concatenate(found)[:n]
    raise ValueError(f"interface between subdomains {itf.lower} and {itf.upper}: too few "
                     f"points of its face lie inside the domain ({have} of {n} after "
                     f"{MAX_ROUNDS} rounds); use fewer cells along axis {itf.axis}")


def build_shape_points(problem, sids, seed, epoch=0, dtype=torch.float64,
                       device="cpu") -> PointBatch:
    """Points of the experts ``sids`` of a cut decomposition for one sampling epoch."""
    decomp, pde = problem.decomposition, problem.pde
    shape, time_axis = decomp.shape, problem.time_axis
    counts = problem.shape_counts
    m, d = pde.n_out, decomp.box.dim
    sids = np.asarray(sids, dtype=np.int64).reshape(-1)
    E, N, K = len(sids), counts.layout_rows, int(max(counts.entries.max(), 1))
    first_value = N - counts.value_block  # the boundary rows' first row when values_apart
    x = np.empty((E, N, d))
    res_w = np.zeros((E, N))
    data_w, data_t = np.zeros((E, N, m)), np.zeros((E, N, m))
    rows = np.zeros((E, K), np.int64)
    A, b = np.zeros((E, K, m, m)), np.zeros((E, K, m))
    direction, target, w = np.zeros((E, K, d)), np.zeros((E, K, m)), np.zeros((E, K, m))
    by_tag = conditions_per_tag(problem.boundary_conditions, shape.tags + (INITIAL_TAG,))
    for e, sid in enumerate(sids.tolist()):
        lower, upper = decomp.lower[sid], decomp.upper[sid]
        n_int = int(counts.interior[sid])
        rng = rng_for(seed, TAG_INTERIOR, epoch, sid)
        x[e, :n_int] = _in_cell(shape, shape.sample_interior, n_int, rng, lower, upper,
                                time_axis)[0]
        x[e, n_int:] = x[e, 0]  # padding rows: a valid point, weight 0
        res_w[e, :n_int] = 1.0 / n_int
        row = first_value if counts.values_apart else n_int
        pts, normals, tags = _boundary_points(shape, counts, sid, seed, epoch, lower, upper,
                                              time_axis)
        x[e, row:row + len(pts)] = pts
        _write_conditions(by_tag, shape.tags + (INITIAL_TAG,), (pts, normals, tags), row,
                          pde, (rows[e], A[e], b[e], direction[e], target[e], w[e]))
        row += len(pts)
        n_data = int(counts.data[sid])
        if n_data:
            rng = rng_for(seed, TAG_DATA, sid)
            pts = _in_cell(shape, shape.sample_interior, n_data, rng, lower, upper,
                           time_axis)[0]
            x[e, row:row + n_data] = pts
            data_t[e, row:row + n_data] = pde.exact(torch.as_tensor(pts), pde.params).numpy()
            data_w[e, row:row + n_data] = 1.0 / n_data
    sides = _shape_interface_sides(problem, sids, seed, epoch, x, counts)

    def t(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    zeros = t(np.zeros((E, N, m)))
    has_interfaces = counts.n_interface > 0 and len(decomp.interfaces) > 0
    first = int(counts.first_interface.min()) if has_interfaces else N
    bc = BoundaryRows(torch.as_tensor(rows, device=device), t(A), t(b), t(direction), t(target),
                      t(w), bool((b != 0).any()))
    return PointBatch(t(x), t(res_w), zeros, zeros.clone(), t(data_w), t(data_t), sides,
                      counts.n_interface, 1.0, first, boundary_rows=bc,
                      value_rows=counts.value_block)


def _write_conditions(by_tag, tags, points, first_row, pde, out) -> None:
    """Write the condition entries of one expert's boundary points into ``out`` = (rows
    (K,), A (K, m, m), b (K, m), direction (K, d), target (K, m), w (K, m)): for every tag
    in order, its conditions in order, one entry per point of that tag. ``points`` =
    (points (n, d), normals (n, d), tag ids (n,)), at rows ``first_row + i``."""
    pts, normals, tag_ids = points
    rows, A, b, direction, target, w = out
    k = 0
    for tag_id, tag in enumerate(tags):
        sel = np.flatnonzero(tag_ids == tag_id)
        for cond in by_tag[tag] if len(sel) else ():
            r = condition_rows(cond, pts[sel], normals[sel], pde, pde.params)
            span = slice(k, k + len(sel))
            rows[span] = first_row + sel
            A[span], b[span], direction[span], target[span] = r.A, r.b, r.direction, r.target
            w[span] = r.mask * (cond.weight / len(pts))
            k += len(sel)


def _boundary_points(shape, counts, sid, seed, epoch, lower, upper, time_axis):
    """Boundary and initial points of subdomain ``sid``: points (n, d), outward normals
    (n, d) (0 along time; -1 along t for the initial ones) and tag ids (n,) into
    ``shape.tags + ("initial",)``."""
    d = len(lower)
    n_b, n_0 = int(counts.boundary[sid]), int(counts.initial[sid])
    pts, normals, tags = np.empty((0, d)), np.empty((0, d)), np.empty(0, np.int64)
    if n_b:
        rng = rng_for(seed, TAG_BOUNDARY, epoch, sid)
        pts, (n_space, tags) = _in_cell(shape, shape.sample_boundary, n_b, rng, lower, upper,
                                        time_axis)
        normals = np.zeros((n_b, d))
        normals[:, space_columns(d, time_axis)] = n_space
        tags = np.asarray(tags, np.int64)
    if n_0:
        rng = rng_for(seed, TAG_BOUNDARY, epoch, sid, 1)
        init, _ = _in_cell(shape, shape.sample_interior, n_0, rng, lower, upper, time_axis)
        init[:, time_axis] = lower[time_axis]
        n_init = np.zeros((n_0, d))
        n_init[:, time_axis] = -1.0
        pts = np.concatenate([pts, init])
        normals = np.concatenate([normals, n_init])
        tags = np.concatenate([tags, np.full(n_0, len(shape.tags), np.int64)])
    return pts, normals, tags


def _shape_interface_sides(problem, sids, seed, epoch, x, counts) -> list:
    """Write the interface points of the experts ``sids`` into ``x`` (E, N, d); return
    their sides (e, row0, Interface) in (e, iid) order."""
    decomp, n_if = problem.decomposition, counts.n_interface
    if not n_if:
        return []
    sides, drawn = [], {}
    for e, sid in enumerate(sids.tolist()):
        row = int(counts.first_interface[sid])
        for itf in decomp.interfaces_of(sid):
            if itf.iid not in drawn:
                drawn[itf.iid] = interface_face_points(decomp.shape, itf, n_if, seed, epoch,
                                                       problem.time_axis)
            pts = drawn[itf.iid].copy()
            pts[:, itf.axis] = itf.coord(sid)
            x[e, row:row + n_if] = pts
            sides.append((e, row, itf))
            row += n_if
    return sides

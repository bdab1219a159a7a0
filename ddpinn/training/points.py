"""Collocation points of the local experts, generated from sid-keyed seeds.

Each expert's points are a pure function of (seed, sid, epoch); both owners of an interface
draw the same interface points from the interface's own key, without talking. The points of
all local experts are laid out in one padded batch, shape (E, N, d), so one batched forward
pass evaluates everything: rows are [interior | boundary faces | data | interfaces | padding].

With data-parallel replicas, replica r of R keeps rows r, r+R, r+2R, ... of every set of
points (interior, each boundary face, data, each interface) and the weights of the whole set,
so the replicas' losses add up to the loss of all points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddpinn.geometry import sample_box
from ddpinn.geometry.sampling import unit_samples

TAG_INTERIOR, TAG_BOUNDARY, TAG_DATA, TAG_INTERFACE, TAG_R3 = 1, 2, 3, 4, 5
# The choice of a gridded observation file's nodes per expert (ddpinn.data.observations).
TAG_OBSERVATIONS = 6


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """Random stream named by integers; identical on every rank."""
    return np.random.default_rng(np.random.SeedSequence([int(seed)] + [int(k) for k in key]))


def share(points: np.ndarray, replica: int, replicas: int) -> np.ndarray:
    """Replica ``replica``'s disjoint share of a set of points: (n, d) -> (~n/R, d)."""
    return points[replica::replicas]


def share_size(n: int, replica: int, replicas: int) -> int:
    return len(range(replica, n, replicas))


def interface_points(itf, sid: int, n: int, seed: int, epoch: int = 0) -> np.ndarray:
    """Points of interface ``itf`` as seen by subdomain ``sid``: (n, d).

    Both sides share the tangential coordinates; the normal coordinate is the interface's
    position in ``sid``'s frame (they differ only across a periodic wrap).
    """
    rng = rng_for(seed, TAG_INTERFACE, epoch, *itf.seed_key())
    pts = sample_box(itf.face_box, n, rng)
    pts[:, itf.axis] = itf.coord(sid)
    return pts


@dataclass
class PointBatch:
    """Padded points of E local experts and the per-row weights of each loss term.

    Attributes
    ----------
    x : Tensor (E, N, d)
    res_w : Tensor (E, N)          1 / n_interior on interior rows, else 0
    bc_w, bc_target : Tensor (E, N, m)  weight and Dirichlet value per row and output
    data_w, data_target : Tensor (E, N, m)
    sides : list of (e, row0, Interface) -- local interface sides, in (e, iid) order
    n_interface : int              points per interface in this batch (this replica's share)
    interface_fraction : float     n_interface / points per interface over all replicas
    interface_row : int            first row of the interface block of every expert of the
                                   whole decomposition (N: no interfaces); rows from here on
                                   are evaluated first, so the exchange can start early
    value_rows : int               trailing rows that need the outputs' values only (data
                                   rows appended after all others): evaluated by a plain
                                   forward pass, without derivatives or PDE residual
    """

    x: torch.Tensor
    res_w: torch.Tensor
    bc_w: torch.Tensor
    bc_target: torch.Tensor
    data_w: torch.Tensor
    data_target: torch.Tensor
    sides: list
    n_interface: int
    interface_fraction: float = 1.0
    interface_row: int = 0
    # Boundary conditions as linear operators (ddpinn.training.points_shape.BoundaryRows),
    # on domains with a shape or [[boundary]] tables; bc_w is then zero everywhere
    boundary_rows: object = None
    value_rows: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the point tensors (coordinates, weights and targets)."""
        extra = self.boundary_rows.nbytes if self.boundary_rows is not None else 0
        return extra + int(sum(t.numel() * t.element_size() for t in (
            self.x, self.res_w, self.bc_w, self.bc_target, self.data_w, self.data_target)))


def batch_bytes(n_experts: int, n_rows: int, dim: int, n_out: int, itemsize: int) -> int:
    """Size of a :class:`PointBatch` of ``n_experts`` padded to ``n_rows``, without building
    it: x (E, N, d), res_w (E, N) and four (E, N, m) weight and target arrays."""
    return n_experts * n_rows * (dim + 1 + 4 * n_out) * itemsize


def padded_rows(decomp, points_cfg, time_axis=None, replicas: int = 1) -> int:
    """Rows per expert N: the largest subdomain of the whole decomposition.

    Padding every rank's experts to this global maximum (not the rank's own) gives identical
    shapes, which makes each expert's arithmetic bitwise the same on any rank count. With
    replicas, N is that of replica 0 (it has the largest shares).
    """
    n_int, n_bc, n_if, n_data = (share_size(n, 0, replicas) for n in (
        points_cfg.interior, points_cfg.boundary, points_cfg.interface, points_cfg.data))
    faces = decomp.boundary_face_mask(time_axis).sum(axis=(1, 2))  # (S,)
    rows = n_int + n_bc * faces + n_data + n_if * decomp.interface_counts()
    return int(rows.max())


def problem_rows(problem, replicas: int = 1) -> int:
    """Rows per expert N of a problem: :func:`padded_rows`, or the largest subdomain's
    points of a cut decomposition."""
    extra = _observation_rows(problem)
    if problem.shape is not None:
        return problem.shape_counts.layout_rows + extra
    return padded_rows(problem.decomposition, problem.cfg.points, problem.time_axis,
                       replicas) + extra


def _observation_rows(problem) -> int:
    """Observation rows per expert (appended after all others)."""
    obs = getattr(problem, "observation_counts", None)
    return int(obs.max()) if obs is not None and len(obs) else 0


def problem_value_rows(problem) -> int:
    """Of :func:`problem_rows`, the trailing value-only rows (:attr:`PointBatch.value_rows`):
    the observation rows, and the boundary, initial and data block of a cut decomposition
    whose conditions read no derivative."""
    extra = _observation_rows(problem)
    return extra + (problem.shape_counts.value_block if problem.shape is not None else 0)


def _unit(keys, n, d, sampling="uniform") -> np.ndarray:
    """Points in [0, 1)^d of the set ``sampling``, one sid-keyed stream per row of ``keys``:
    (K, n, d)."""
    out = np.empty((len(keys), n, d))
    for k, key in enumerate(keys):
        out[k] = unit_samples(sampling, n, d, rng_for(*key))
    return out


def build_points(decomp, sids, pde, points_cfg, seed, params, time_axis=None, epoch=0,
                 dtype=torch.float64, device="cpu", replica=0, replicas=1) -> PointBatch:
    """Points of the experts ``sids`` (a rank's block) for one sampling epoch.

    ``params`` are the PDE's true parameters (data of inverse problems come from them).
    ``replica`` of ``replicas`` selects this rank's share of every set of points (rows
    replica, replica + R, ... of each set); the weights stay those of the whole set.
    Only the random streams are drawn one by one (each is keyed by its sid or interface);
    the layout and the boundary/data targets are computed for all local experts at once.
    """
    m, d = pde.n_out, decomp.box.dim
    n_int, n_bc, n_if, n_data = (points_cfg.interior, points_cfg.boundary,
                                 points_cfg.interface, points_cfg.data)
    # This replica's counts; the normalisers are those of the whole sets.
    k_int, k_bc, k_data = (share_size(n, replica, replicas) for n in (n_int, n_bc, n_data))
    sids = np.asarray(sids, dtype=np.int64).reshape(-1)
    E, N = len(sids), padded_rows(decomp, points_cfg, time_axis, replicas)
    lower, upper = decomp.lower[sids], decomp.upper[sids]  # (E, d)
    width = upper - lower
    x = np.empty((E, N, d))
    res_w = np.zeros((E, N))
    bc_w, bc_t = np.zeros((E, N, m)), np.zeros((E, N, m))
    data_w, data_t = np.zeros((E, N, m)), np.zeros((E, N, m))

    sampling = points_cfg.sampling
    interior = lower[:, None] + _unit([(seed, TAG_INTERIOR, epoch, s) for s in sids],
                                      n_int, d, sampling) * width[:, None]
    interior = interior[:, replica::replicas]
    x[:] = interior[:, :1]  # padding rows: a valid point, weight 0
    x[:, :k_int] = interior
    res_w[:, :k_int] = 1.0 / n_int

    n_faces = _boundary_faces(decomp, sids, pde, params, time_axis, (seed, epoch), n_bc,
                              k_int, (replica, replicas), x, bc_w, bc_t, sampling)
    r_data = k_int + k_bc * n_faces  # (E,)
    if n_data:
        pts = lower[:, None] + _unit([(seed, TAG_DATA, s) for s in sids], n_data, d,
                                     sampling) * width[:, None]
        pts = pts[:, replica::replicas]
        rows = r_data[:, None] + np.arange(k_data)
        x[np.arange(E)[:, None], rows] = pts
        data_t[np.arange(E)[:, None], rows] = pde.exact(
            torch.as_tensor(pts.reshape(-1, d)), params).numpy().reshape(E, k_data, m)
        data_w[np.arange(E)[:, None], rows] = 1.0 / n_data

    sides, k_if = _interface_sides(decomp, sids, n_if, seed, epoch, r_data + k_data, x,
                                   replica, replicas, sampling)

    # The same row on every rank (a minimum over the whole decomposition), so every expert's
    # arithmetic keeps the same shapes on any rank count.
    faces = decomp.boundary_face_mask(time_axis).sum(axis=(1, 2))
    first_interface = k_int + k_bc * int(faces.min()) + k_data
    has_interfaces = n_if > 0 and len(decomp.interfaces) > 0

    def t(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return PointBatch(t(x), t(res_w), t(bc_w), t(bc_t), t(data_w), t(data_t), sides, k_if,
                      k_if / n_if if n_if else 1.0, first_interface if has_interfaces else N)


def _boundary_faces(decomp, sids, pde, params, time_axis, key, n_bc, first_row, share, x,
                    bc_w, bc_t, sampling="uniform") -> np.ndarray:
    """Write the boundary points of the experts ``sids`` into ``x`` (E, N, d) from row
    ``first_row`` on, with their Dirichlet targets and weights into ``bc_t`` and ``bc_w``
    (E, N, m); ``key`` = (seed, epoch), ``share`` = (replica, replicas). Returns the number
    of boundary faces of each expert, (E,)."""
    (seed, epoch), (replica, replicas) = key, share
    sids = np.asarray(sids, dtype=np.int64).reshape(-1)
    m, d = pde.n_out, decomp.box.dim
    lower, upper = decomp.lower[sids], decomp.upper[sids]  # (E, d)
    width = upper - lower
    k_bc = share_size(n_bc, replica, replicas)
    # Boundary faces in (expert, axis, lower side first) order, as Decomposition.boundary_faces.
    face_e, face_a, face_hi = np.nonzero(decomp.boundary_face_mask(time_axis)[sids])
    face_s = 2 * face_hi - 1  # -1 lower, +1 upper
    n_faces = np.bincount(face_e, minlength=len(sids))
    first_face = np.cumsum(n_faces) - n_faces
    face_row = first_row + k_bc * (np.arange(len(face_e)) - first_face[face_e])
    pts = lower[face_e, None] + _unit(
        [(seed, TAG_BOUNDARY, epoch, sids[e], a, s + 1)
         for e, a, s in zip(face_e, face_a, face_s)], n_bc, d, sampling) * width[face_e, None]
    pts = pts[:, replica::replicas]
    pts[np.arange(len(face_e)), :, face_a] = np.where(
        face_hi == 1, upper[face_e, face_a], lower[face_e, face_a])[:, None]
    rows = face_row[:, None] + np.arange(k_bc)  # (F, k_bc)
    x[face_e[:, None], rows] = pts
    for a, s in sorted(set(zip(face_a.tolist(), face_s.tolist()))):
        # One call per face class: the boundary data of every local face of that class.
        sel = np.flatnonzero((face_a == a) & (face_s == s))
        target, mask = pde.boundary_data(torch.as_tensor(pts[sel].reshape(-1, d)), a, s, params)
        bc_t[face_e[sel, None], rows[sel]] = target.numpy().reshape(len(sel), k_bc, m)
        bc_w[face_e[sel, None], rows[sel]] = (np.asarray(mask, float)
                                               / (n_bc * n_faces[face_e[sel]])[:, None, None])
    return n_faces


def _interface_sides(decomp, sids, n_if, seed, epoch, first_row, x, replica=0,
                     replicas=1, sampling="uniform") -> tuple:
    """Write the interface points of the experts ``sids`` into ``x`` (E, N, d) from row
    ``first_row[e]`` on; return their sides, (e, row0, Interface) in (e, iid) order, and the
    points per side (this replica's share of ``n_if``).

    Each interface touching a local expert is drawn once, from its own key, and copied to
    its local side(s); only the normal coordinate differs between the sides.
    """
    local = np.full(decomp.n_subdomains, -1, dtype=np.int64)
    local[sids] = np.arange(len(sids))
    ends = local[decomp.interface_sids]  # (I, 2): local expert of each side, or -1
    iids = np.flatnonzero((ends >= 0).any(axis=1))
    itfs = [decomp.interfaces[i] for i in iids.tolist()]
    if not itfs:  # one subdomain (periodic axes of one cell are built into the experts)
        return [], share_size(n_if, replica, replicas)
    face_lo = np.array([i.face_box.lower for i in itfs], float).reshape(len(itfs), -1)
    face_w = np.array([i.face_box.upper for i in itfs], float).reshape(len(itfs), -1) - face_lo
    pts = face_lo[:, None] + _unit([(seed, TAG_INTERFACE, epoch, *i.seed_key())
                                    for i in itfs], n_if, x.shape[-1], sampling) * face_w[:, None]
    pts = pts[:, replica::replicas]
    k_if = share_size(n_if, replica, replicas)
    # Sides: (position in iids, 0 lower / 1 upper) for every end owned here, by (e, iid).
    k, end = np.nonzero(ends[iids] >= 0)
    e = ends[iids][k, end]
    order = np.lexsort((iids[k], e))
    k, end, e = k[order], end[order], e[order]
    counts = np.bincount(e, minlength=len(sids))
    row0 = first_row[e] + k_if * (np.arange(len(e)) - (np.cumsum(counts) - counts)[e])
    axis = decomp.interface_axis[iids[k]]
    coord = np.array([[i.coord_lower, i.coord_upper] for i in itfs], float).reshape(-1, 2)
    side_pts = pts[k]
    side_pts[np.arange(len(k)), :, axis] = coord[k, end][:, None]
    x[e[:, None], row0[:, None] + np.arange(k_if)] = side_pts
    return [(ei, r, itfs[ki]) for ei, r, ki in zip(e.tolist(), row0.tolist(), k.tolist())], k_if

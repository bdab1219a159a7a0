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

from ddpinn.geometry import Face, sample_box, sample_face

TAG_INTERIOR, TAG_BOUNDARY, TAG_DATA, TAG_INTERFACE, TAG_R3 = 1, 2, 3, 4, 5


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


def build_points(decomp, sids, pde, points_cfg, seed, params, time_axis=None, epoch=0,
                 dtype=torch.float64, device="cpu", replica=0, replicas=1) -> PointBatch:
    """Points of the experts ``sids`` (a rank's block) for one sampling epoch.

    ``params`` are the PDE's true parameters (data of inverse problems come from them).
    ``replica`` of ``replicas`` selects this rank's share of every set of points; the
    weights stay those of the whole set.
    """
    m, d = pde.n_out, decomp.box.dim
    n_int, n_bc, n_if, n_data = (points_cfg.interior, points_cfg.boundary,
                                 points_cfg.interface, points_cfg.data)
    weight_int, weight_bc, weight_data = n_int, n_bc, n_data  # normalisers: whole sets

    def mine(points):
        return share(points, replica, replicas)

    rows = []
    for sid in sids:
        sd = decomp.subdomains[sid]
        parts = {"interior": mine(sample_box(sd.box, n_int,
                                             rng_for(seed, TAG_INTERIOR, epoch, sid)))}
        faces = decomp.boundary_faces(sid, time_axis)
        parts["boundary"] = [(a, s, mine(sample_face(
            sd.box, Face(a, s), n_bc, rng_for(seed, TAG_BOUNDARY, epoch, sid, a, s + 1))))
            for a, s in faces]
        parts["data"] = mine(sample_box(sd.box, n_data, rng_for(seed, TAG_DATA, sid))) \
            if n_data else np.zeros((0, d))
        parts["interfaces"] = [(itf, mine(interface_points(itf, sid, n_if, seed, epoch)))
                               for itf in decomp.interfaces_of(sid)]
        rows.append(parts)
    # This replica's counts (replica 0 has the largest shares: padding is sized for it).
    n_int, n_bc, n_if, n_data = (share_size(n, replica, replicas)
                                 for n in (n_int, n_bc, n_if, n_data))
    n_int0, n_bc0, n_if0, n_data0 = (share_size(n, 0, replicas) for n in (
        points_cfg.interior, points_cfg.boundary, points_cfg.interface, points_cfg.data))

    # Pad to the largest subdomain of the whole decomposition, not of this rank: identical
    # shapes make each expert's arithmetic bitwise the same on any rank count.
    N = max(n_int0 + n_bc0 * len(decomp.boundary_faces(s, time_axis)) + n_data0
            + n_if0 * len(decomp.interfaces_of(s)) for s in range(decomp.n_subdomains))
    E = len(sids)
    x = np.empty((E, N, d))
    res_w = np.zeros((E, N))
    bc_w, bc_t = np.zeros((E, N, m)), np.zeros((E, N, m))
    data_w, data_t = np.zeros((E, N, m)), np.zeros((E, N, m))
    sides = []
    for e, p in enumerate(rows):
        x[e, :] = p["interior"][0]  # padding rows: a valid point, weight 0
        x[e, :n_int] = p["interior"]
        res_w[e, :n_int] = 1.0 / weight_int
        r = n_int
        n_bc_rows = weight_bc * len(p["boundary"])
        for a, s, pts in p["boundary"]:
            target, mask = pde.boundary_data(torch.as_tensor(pts), a, s, params)
            x[e, r:r + n_bc] = pts
            bc_t[e, r:r + n_bc] = target.numpy()
            bc_w[e, r:r + n_bc] = np.asarray(mask, float) / n_bc_rows
            r += n_bc
        if n_data:
            x[e, r:r + n_data] = p["data"]
            data_t[e, r:r + n_data] = pde.exact(torch.as_tensor(p["data"]), params).numpy()
            data_w[e, r:r + n_data] = 1.0 / weight_data
            r += n_data
        for itf, pts in p["interfaces"]:
            x[e, r:r + n_if] = pts
            sides.append((e, r, itf))
            r += n_if

    def t(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return PointBatch(t(x), t(res_w), t(bc_w), t(bc_t), t(data_w), t(data_t), sides, n_if,
                      n_if / points_cfg.interface)

"""Owned/ghost exchange of interface values between the owners of the two sides.

Every interface side a rank owns is matched with the other side: a local side (both experts
on this rank) or a remote one (owned by a neighbour rank). Remote values travel in one
contiguous buffer per neighbour rank, sides ordered by interface id, so both ranks agree on
the layout without talking. Local partners take the same code path without MPI; in both
cases the other side's values are detached constants.
"""
from __future__ import annotations

import torch

from ddpinn.interface.conditions import CONDITIONS


class InterfacePlan:
    """Who talks to whom about which interface side; built once per point layout.

    Parameters
    ----------
    sides : list of (e, row0, Interface) from :class:`~ddpinn.training.points.PointBatch`
    sids : list of int, the local experts (index e -> sid)
    owner : ndarray (S_total,), sid -> rank
    rank : int
    n_points : int, points per interface
    n_rows : int, N of the point batch (to index the flattened (E*N) rows)
    """

    def __init__(self, sides, sids, owner, rank, n_points, n_rows, device="cpu"):
        self.n_sides = len(sides)
        self.n_points = n_points
        rows = [[e * n_rows + r0 + i for i in range(n_points)] for e, r0, _ in sides]
        self.rows = torch.tensor(rows, dtype=torch.long, device=device).reshape(-1, n_points)
        self.axis = torch.tensor([itf.axis for _, _, itf in sides], dtype=torch.long,
                                 device=device)
        self.expert = torch.tensor([e for e, _, _ in sides], dtype=torch.long, device=device)
        self.kind = [itf.kind for _, _, itf in sides]
        # 1.0 for the sides of each interface class, for per-class metrics.
        self.kind_mask = {k: torch.tensor([kind == k for kind in self.kind], dtype=torch.float64,
                                          device=device) for k in ("space", "time")}
        self.iid = [itf.iid for _, _, itf in sides]
        by_key = {(itf.iid, sids[e]): s for s, (e, _, itf) in enumerate(sides)}
        local_self, local_partner = [], []
        remote = {}
        for s, (e, _, itf) in enumerate(sides):
            other = itf.other(sids[e])
            if int(owner[other]) == rank:
                local_self.append(s)
                local_partner.append(by_key[(itf.iid, other)])
            else:
                remote.setdefault(int(owner[other]), []).append(s)
        self.local_self = torch.tensor(local_self, dtype=torch.long, device=device)
        self.local_partner = torch.tensor(local_partner, dtype=torch.long, device=device)
        # Sides are already in (e, iid) order; per neighbour sort by iid for a shared layout.
        self.remote = {r: sorted(ss, key=lambda s: self.iid[s]) for r, ss in sorted(remote.items())}
        self.remote_index = {r: torch.tensor(ss, dtype=torch.long, device=device)
                             for r, ss in self.remote.items()}

    @property
    def neighbour_ranks(self) -> list:
        return list(self.remote)

    def remote_points(self) -> int:
        """Interface points whose other side lives on another rank."""
        return self.n_points * sum(len(v) for v in self.remote.values())


def gather_sides(plan: InterfacePlan, full: torch.Tensor) -> torch.Tensor:
    """Rows of the interface sides: full (E, N, ...) -> (S, n, ...)."""
    flat = full.reshape(-1, *full.shape[2:])
    return flat[plan.rows.reshape(-1)].reshape(plan.n_sides, plan.n_points, *full.shape[2:])


def select_axis(plan: InterfacePlan, t: torch.Tensor) -> torch.Tensor:
    """Pick each side's normal axis from the last dim: (S, n, c, d) -> (S, n, c)."""
    idx = plan.axis.view(-1, 1, 1, 1).expand(*t.shape[:-1], 1)
    return t.gather(-1, idx).squeeze(-1)


def interface_values(plan, fields, residual, pde, params, quantities) -> dict:
    """This rank's side values of the requested quantities, each (S, n, c).

    Only what is named in ``quantities`` is computed (see
    :mod:`ddpinn.interface.conditions` for the list).
    """
    out = {}
    m, d = pde.n_out, fields.x.shape[-1]
    if "u" in quantities:
        out["u"] = gather_sides(plan, fields.u)
    if "res" in quantities:
        out["res"] = gather_sides(plan, residual)
    if "dn" in quantities:
        grads = torch.stack([fields.grad(k) for k in range(m)], dim=-2)  # (E, N, m, d)
        out["dn"] = select_axis(plan, gather_sides(plan, grads))
    if "dnn" in quantities or "dtt" in quantities:
        diag = torch.stack([torch.stack([fields.d2(k, a, a) for a in range(d)], dim=-1)
                            for k in range(m)], dim=-2)  # (E, N, m, d)
        sides = gather_sides(plan, diag)
        if "dnn" in quantities:
            out["dnn"] = select_axis(plan, sides)
        if "dtt" in quantities:
            normal = torch.nn.functional.one_hot(plan.axis, d).to(sides.dtype)
            out["dtt"] = (sides * (1 - normal[:, None, None, :])).flatten(-2)
    if "flux" in quantities:
        out["flux"] = select_axis(plan, gather_sides(plan, pde.flux(fields, params)))
    if "gres" in quantities:
        g = torch.stack([fields.grad_of(residual[..., j]) for j in range(residual.shape[-1])],
                        dim=-2)  # (E, N, q, d)
        out["gres"] = gather_sides(plan, g).flatten(-2)
    return out


def post(plan, comm, values: dict):
    """Post the non-blocking exchange of this rank's side values (detached).

    Returns a handle for :func:`complete`.
    """
    names = sorted(values)
    sends, sizes = {}, {}
    for r, idx in plan.remote_index.items():
        parts = [values[q].detach()[idx].reshape(-1) for q in names]
        sends[r] = torch.cat(parts) if parts else torch.zeros(0)
        sizes[r] = sends[r].numel()
    dtype = next(iter(values.values())).dtype if values else torch.float64
    handle = comm.post_exchange(sends, sizes, dtype) if sends else None
    return handle, names


def complete(plan, comm, values: dict, handle) -> dict:
    """Finish the exchange: the other side's values, detached, each (S, n, c)."""
    mpi_handle, names = handle
    other = {q: torch.empty_like(values[q]) for q in names}
    for q in names:
        if len(plan.local_self):
            other[q][plan.local_self] = values[q].detach()[plan.local_partner]
    if mpi_handle is not None:
        received = comm.wait_exchange(mpi_handle)
        for r, idx in plan.remote_index.items():
            buf = received[r].to(values[names[0]].device)
            offset = 0
            for q in names:
                shape = (len(idx),) + tuple(values[q].shape[1:])
                n = int(torch.Size(shape).numel())
                other[q][idx] = buf[offset:offset + n].reshape(shape)
                offset += n
    return other


def condition_losses(names, mine: dict, other: dict) -> dict:
    """Per-side penalty of each active condition: {name: (S,)}."""
    return {n: CONDITIONS[n].fn(mine, other) for n in names}

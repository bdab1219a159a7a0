"""Owned/ghost exchange of interface values between the owners of the two sides.

Every interface side a rank owns is matched with the other side: a local side (both experts
on this rank) or a remote one (owned by a neighbour rank). Remote values travel in one
contiguous buffer per neighbour rank, sides ordered by interface id, so both ranks agree on
the layout without talking. Local partners take the same code path without MPI; in both
cases the other side's values are detached constants.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ddpinn.interface.conditions import CONDITIONS
from ddpinn.interface.quantities import (  # noqa: F401 (gather_sides, select_axis: public here)
    compute_quantities, gather_sides, select_axis)


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
        # Per-side arrays, built without a Python loop over points or partner look-ups, so
        # the plan of thousands of subdomains costs milliseconds.
        expert = np.fromiter((e for e, _, _ in sides), np.int64, self.n_sides)
        row0 = np.fromiter((r for _, r, _ in sides), np.int64, self.n_sides)
        iid = np.fromiter((itf.iid for _, _, itf in sides), np.int64, self.n_sides)
        axis = np.fromiter((itf.axis for _, _, itf in sides), np.int64, self.n_sides)
        other_sid = np.fromiter((itf.other(sids[e]) for e, _, itf in sides), np.int64,
                                self.n_sides)
        rows = (expert * n_rows + row0)[:, None] + np.arange(n_points)
        self.rows = torch.as_tensor(rows, dtype=torch.long, device=device).reshape(-1, n_points)
        self.axis = torch.as_tensor(axis, dtype=torch.long, device=device)
        self.expert = torch.as_tensor(expert, dtype=torch.long, device=device)
        self.kind = [itf.kind for _, _, itf in sides]
        # 1.0 where this side is the upper one of its interface (later in time for a time
        # interface): the side an upwind condition constrains.
        self.downstream = torch.tensor([float(sids[e] == itf.upper) for e, _, itf in sides],
                                       dtype=torch.float64, device=device)
        # 1.0 for the sides of each interface class, for per-class metrics.
        self.kind_mask = {k: torch.tensor([kind == k for kind in self.kind], dtype=torch.float64,
                                          device=device) for k in ("space", "time")}
        self.iid = iid.tolist()
        other_rank = np.asarray(owner, dtype=np.int64)[other_sid] if self.n_sides \
            else np.zeros(0, np.int64)
        is_local = other_rank == rank
        # The partner of a local side is the other side of the same interface: sides sorted
        # by (iid, own sid) put both sides of an interface next to each other.
        own_sid = np.asarray(sids, dtype=np.int64)[expert] if self.n_sides \
            else np.zeros(0, np.int64)
        local_self = np.flatnonzero(is_local)
        by_pair = local_self[np.lexsort((own_sid[local_self], iid[local_self]))]
        partner = np.empty(self.n_sides, dtype=np.int64)
        partner[by_pair[0::2]], partner[by_pair[1::2]] = by_pair[1::2], by_pair[0::2]
        self.local_self = torch.as_tensor(local_self, dtype=torch.long, device=device)
        self.local_partner = torch.as_tensor(partner[local_self], dtype=torch.long,
                                             device=device)
        # Sides are already in (e, iid) order; per neighbour sort by iid for a shared layout.
        remote = np.flatnonzero(~is_local)
        remote = remote[np.lexsort((remote, iid[remote], other_rank[remote]))]
        ranks, starts = np.unique(other_rank[remote], return_index=True)
        self.remote = {int(r): part.tolist()
                       for r, part in zip(ranks, np.split(remote, starts[1:]))}
        self.remote_index = {r: torch.tensor(ss, dtype=torch.long, device=device)
                             for r, ss in self.remote.items()}

    def from_row(self, first: int, dropped: int = 0) -> "InterfacePlan":
        """The same plan for the rows ``first:N - dropped`` of every expert,
        (E, N - first - dropped): its side rows must all lie there."""
        shifted = copy.copy(self)
        shifted.rows = self.rows - (self.expert[:, None] + 1) * first \
            - self.expert[:, None] * dropped
        return shifted

    @property
    def neighbour_ranks(self) -> list:
        return list(self.remote)

    def remote_points(self) -> int:
        """Interface points whose other side lives on another rank."""
        return self.n_points * sum(len(v) for v in self.remote.values())


def interface_values(plan, fields, residual, pde, params, quantities) -> dict:
    """This rank's side values of the requested quantities, each (S, n, c).

    Only what is named in ``quantities`` is computed, in the order of the registry
    :data:`ddpinn.interface.quantities.QUANTITIES`.
    """
    return compute_quantities(plan, fields, residual, pde, params, quantities)


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


def condition_losses(names, mine: dict, other: dict, plan=None) -> dict:
    """Per-side penalty of each active condition: {name: (S,)}.

    With ``plan``, ``mine["downstream"]`` (S,) marks the sides on the upper side of their
    interface (local information, never exchanged), for the upwind conditions."""
    if plan is not None:
        mine = {**mine, "downstream": plan.downstream}
    return {n: CONDITIONS[n].fn(mine, other) for n in names}

"""Data-parallel replicas: R ranks share one block of experts.

The world of N ranks is cut into G = N / R *groups* of R consecutive ranks (so a group tends
to sit on one node). The partition maps ``sid -> group``; the R ranks of a group hold the same
experts and each takes a disjoint share of every expert's points. Two sub-communicators:

- ``group_comm``: the R replicas of this group; expert gradients are summed over it;
- ``peer_comm``: replica r of every group (G ranks, ranked by group); interface values are
  exchanged over it, so replica r of one group talks to replica r of its neighbour's group,
  which holds the same share of the interface points.

With R = 1 the group is this rank alone and ``peer_comm`` is the world itself, so nothing
changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ddpinn.parallel.comm import SerialComm


def check_replicas(n_ranks: int, replicas: int, n_subdomains: int) -> int:
    """Number of groups G = n_ranks / replicas; ValueError naming the field otherwise."""
    if replicas < 1:
        raise ValueError(f"field 'parallel.replicas' = {replicas} must be >= 1")
    if n_ranks % replicas:
        raise ValueError(f"field 'parallel.replicas' = {replicas} does not divide the "
                         f"{n_ranks} ranks: the rank count must be a multiple of the replicas "
                         f"(e.g. {replicas * max(1, n_ranks // replicas)} or "
                         f"{replicas * (n_ranks // replicas + 1)} ranks)")
    groups = n_ranks // replicas
    if groups > n_subdomains and replicas == 1:
        raise ValueError(f"{n_ranks} ranks but only {n_subdomains} subdomains: use at most "
                         f"{n_subdomains} ranks, a finer 'decomposition.grid' or "
                         f"'parallel.replicas' > 1")
    if groups > n_subdomains:
        raise ValueError(f"{n_ranks} ranks with parallel.replicas = {replicas} make {groups} "
                         f"groups but only {n_subdomains} subdomains: use at most "
                         f"{n_subdomains * replicas} ranks, more replicas or a finer "
                         f"'decomposition.grid'")
    return groups


def group_ranks(n_ranks: int, replicas: int) -> list:
    """World ranks of every group: [[0..R-1], [R..2R-1], ...]."""
    return [list(range(g * replicas, (g + 1) * replicas)) for g in range(n_ranks // replicas)]


@dataclass
class ReplicaLayout:
    """Where this rank sits: group ``group`` of ``groups``, replica ``replica`` of
    ``replicas``, with its two sub-communicators (see the module docstring)."""

    replicas: int
    groups: int
    group: int
    replica: int
    group_comm: object
    peer_comm: object

    @property
    def all_groups(self) -> list:
        return group_ranks(self.groups * self.replicas, self.replicas)


def make_layout(comm, replicas: int, n_subdomains: int) -> ReplicaLayout:
    """Collective (communicator splits). The replica layout of ``comm``'s ranks."""
    groups = check_replicas(comm.size, replicas, n_subdomains)
    group, replica = divmod(comm.rank, replicas)
    if replicas == 1:
        return ReplicaLayout(1, groups, group, 0, SerialComm(), comm)
    return ReplicaLayout(replicas, groups, group, replica,
                         group_comm=comm.split(group, replica),
                         peer_comm=comm.split(replica, group))

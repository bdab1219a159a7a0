"""What one rank owns: its place among the ranks and the subdomains it holds.

An :class:`Ownership` is built once per run, before the experts. It holds the replica layout
(groups of ranks sharing a block of experts, :mod:`ddpinn.parallel.replicas`), the
allreduce backend, the partition ``sid -> group`` and this rank's subdomain ids. The exact
sums over experts that make a run's losses and gradients the same on any rank count
(:mod:`ddpinn.training.context`) take their communicators, backend and item count from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpinn.decomposition import assign_owners, owned_sids
from ddpinn.parallel.backends import make_backend
from ddpinn.parallel.replicas import ReplicaLayout, make_layout


@dataclass
class Ownership:
    """The ranks' layout and this rank's experts.

    Attributes
    ----------
    comm : Comm or SerialComm, the world
    layout : ReplicaLayout, group and replica of this rank and their communicators
    backend : allreduce backend (``parallel.backend``)
    owner : ndarray (S,), sid -> group
    sids : list of int, the subdomains of this rank's group, in expert order e = 0..E-1
    n_subdomains : int, S
    """

    comm: object
    layout: ReplicaLayout
    backend: object
    owner: np.ndarray
    sids: list
    n_subdomains: int

    @classmethod
    def build(cls, comm, decomposition, replicas: int, backend: str,
              work=None) -> "Ownership":
        """Collective (communicator splits, backend set-up). ``work``: points per
        subdomain (S,), balanced over the ranks of a cut decomposition."""
        layout = make_layout(comm, replicas, decomposition.n_subdomains)
        owner = assign_owners(decomposition, layout.groups, work)
        return cls(comm, layout, make_backend(backend, comm, layout), owner,
                   owned_sids(owner, layout.group), decomposition.n_subdomains)

    @property
    def n_items(self) -> int:
        """Items of a sum over the world: every expert once per replica (bounds exact sums)."""
        return self.n_subdomains * self.layout.replicas

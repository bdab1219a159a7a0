"""Allreduce backends for shared parameters: one interface, three implementations.

A backend sums a flat tensor across all ranks in place (collective). Shared-parameter
gradients are fused into one flat tensor, so each step makes one call. With data-parallel
replicas (:mod:`ddpinn.parallel.replicas`) a backend also sums over this rank's group only
(``group_sum_``): an MPI sub-communicator, a torch.distributed sub-group or a Horovod process
set.
"""
from __future__ import annotations

import atexit
import os

import torch

BACKENDS = {}


def register(name):
    def deco(cls):
        BACKENDS[name] = cls
        cls.name = name
        return cls
    return deco


@register("mpi4py")
class MPI4PyBackend:
    """Sum through the wrapped mpi4py communicator (the default)."""

    def __init__(self, comm, layout=None):
        self.comm = comm
        self.group_comm = layout.group_comm if layout is not None else None

    def allreduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective. In-place sum of ``tensor`` (any shape) over all ranks."""
        return self.comm.allreduce_tensor_(tensor)

    def group_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective over the group. In-place sum over the replicas of this rank's group."""
        return self.group_comm.allreduce_tensor_(tensor) if self.group_comm else tensor


@register("torch")
class TorchDistributedBackend:
    """Sum through ``torch.distributed`` (gloo on CPU, NCCL on GPU).

    The rendezvous address is agreed over MPI, so no environment set-up is needed.
    """

    def __init__(self, comm, layout=None):
        import torch.distributed as dist

        self.dist, self.comm = dist, comm
        if not dist.is_initialized():
            import socket

            addr = None
            if comm.rank == 0:
                host = os.environ.get("DDPINN_DIST_ADDR", socket.gethostname())
                with socket.socket() as s:
                    s.bind(("", 0))
                    addr = f"tcp://{host}:{s.getsockname()[1]}"
            addr = comm.bcast(addr)
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, init_method=addr, rank=comm.rank,
                                    world_size=comm.size)
            # Tear the group down before the interpreter exits: gloo's threads otherwise
            # abort the process at exit ("terminate called without an active exception").
            atexit.register(self.close)
        self.group = None
        if layout is not None and layout.replicas > 1:
            # Every rank creates every group, in the same order (new_group is collective).
            handles = [dist.new_group(ranks) for ranks in layout.all_groups]
            self.group = handles[layout.group]

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()

    def allreduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        with self.comm.times.measure("allreduce"):
            self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)
        return tensor

    def group_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.group is not None:
            self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM, group=self.group)
        return tensor


@register("horovod")
class HorovodBackend:
    """Sum through Horovod (``horovod.torch``), initialised over the same MPI world."""

    def __init__(self, comm, layout=None):
        import horovod.torch as hvd

        sets = None
        if layout is not None and 1 < layout.replicas < comm.size:
            # Static process sets, one per group, declared identically on every rank.
            sets = [hvd.ProcessSet(ranks) for ranks in layout.all_groups]
        hvd.init(process_sets=sets)
        if hvd.size() != comm.size or hvd.rank() != comm.rank:
            raise RuntimeError(f"Horovod sees rank {hvd.rank()} of {hvd.size()} but MPI has "
                               f"rank {comm.rank} of {comm.size}")
        self.hvd, self.comm = hvd, comm
        self.group = None
        if layout is not None and layout.replicas > 1:
            self.group = sets[layout.group] if sets else hvd.global_process_set

    def allreduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        with self.comm.times.measure("allreduce"):
            return self.hvd.allreduce_(tensor, op=self.hvd.Sum, name="ddpinn.shared")

    def group_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.group is None:
            return tensor
        return self.hvd.allreduce_(tensor, op=self.hvd.Sum, name="ddpinn.group",
                                   process_set=self.group)


def horovod_available() -> bool:
    try:
        import horovod.torch  # noqa: F401
    except Exception:
        return False
    return True


def make_backend(name: str, comm, layout=None):
    """Collective. Build the allreduce backend ``name`` (``auto``: Horovod when installed,
    else mpi4py); ``layout`` (a :class:`~ddpinn.parallel.replicas.ReplicaLayout`) adds the
    sums over replica groups."""
    if name == "auto":
        name = "horovod" if horovod_available() else "mpi4py"
    if name not in BACKENDS:
        raise ValueError(f"unknown allreduce backend {name!r}; choose one of: "
                         f"{', '.join(BACKENDS)}, auto")
    return BACKENDS[name](comm, layout)

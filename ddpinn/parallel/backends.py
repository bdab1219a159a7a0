"""Allreduce backends for shared parameters: one interface, three implementations.

A backend sums a flat tensor across all ranks in place (collective). Shared-parameter
gradients are fused into one flat tensor, so each step makes one call.
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

    def __init__(self, comm):
        self.comm = comm

    def allreduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective. In-place sum of ``tensor`` (any shape) over all ranks."""
        return self.comm.allreduce_tensor_(tensor)


@register("torch")
class TorchDistributedBackend:
    """Sum through ``torch.distributed`` (gloo on CPU, NCCL on GPU).

    The rendezvous address is agreed over MPI, so no environment set-up is needed.
    """

    def __init__(self, comm):
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

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()

    def allreduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        with self.comm.times.measure("allreduce"):
            self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)
        return tensor


@register("horovod")
class HorovodBackend:
    """Sum through Horovod (``horovod.torch``), initialised over the same MPI world."""

    def __init__(self, comm):
        import horovod.torch as hvd

        hvd.init()
        if hvd.size() != comm.size:
            raise RuntimeError(f"Horovod sees {hvd.size()} ranks but MPI has {comm.size}")
        self.hvd, self.comm = hvd, comm

    def allreduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        with self.comm.times.measure("allreduce"):
            return self.hvd.allreduce_(tensor, op=self.hvd.Sum, name="ddpinn.shared")


def horovod_available() -> bool:
    try:
        import horovod.torch  # noqa: F401
    except Exception:
        return False
    return True


def make_backend(name: str, comm):
    """Collective. Build the allreduce backend ``name`` (``auto``: Horovod when installed,
    else mpi4py)."""
    if name == "auto":
        name = "horovod" if horovod_available() else "mpi4py"
    if name not in BACKENDS:
        raise ValueError(f"unknown allreduce backend {name!r}; choose one of: "
                         f"{', '.join(BACKENDS)}, auto")
    return BACKENDS[name](comm)

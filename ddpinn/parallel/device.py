"""Device binding and CPU thread counts, chosen from the node-local rank."""
from __future__ import annotations

import os

import torch


def choose_device(requested: str, comm) -> torch.device:
    """One rank per GPU: rank ``local_rank`` takes GPU ``local_rank % n_gpus``.

    ``requested`` is "cpu", "cuda" or "auto" (cuda when available).
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("parallel.device = 'cuda' but no GPU is visible to this rank")
        index = comm.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def threads_for(masks: list, me: int) -> int:
    """Threads for node-local rank ``me`` from every local rank's CPU affinity mask.

    The cores this rank may run on are shared evenly with the local ranks whose masks
    overlap them: all ranks when nothing is bound (``mpiexec`` without binding), none when
    the launcher gave each rank its own cores (``srun --cpu-bind=cores``,
    ``--cpus-per-task``). At least one.
    """
    mine = set(masks[me])
    return max(1, len(mine) // ranks_sharing(masks, me))


def ranks_sharing(masks: list, me: int) -> int:
    """Node-local ranks (this one included) whose CPU masks overlap rank ``me``'s."""
    mine = set(masks[me])
    return sum(1 for m in masks if mine & set(m)) or 1


def oversubscribed(masks: list, me: int) -> bool:
    """More local ranks share this rank's cores than there are cores."""
    return ranks_sharing(masks, me) > len(set(masks[me]))


def set_threads(requested: int, comm, wait: str = "auto") -> int:
    """Collective over the node. Set torch's intra-op threads: ``requested``, or this
    rank's share of the cores it may run on (:func:`threads_for`).

    Also how this rank waits for messages (``wait``): "spin" (MPI's busy polling, the
    lowest latency), "yield" (test, then give the core away between tests), or "auto":
    yield where the node's ranks outnumber their cores, since a spinning rank there takes
    the core from the rank it is waiting for."""
    if hasattr(os, "sched_getaffinity"):
        mask = sorted(os.sched_getaffinity(0))
    else:
        mask = list(range(os.cpu_count() or 1))
    masks = comm.node_allgather(mask)  # every local rank takes part, whatever it requested
    n = requested if requested > 0 else threads_for(masks, comm.local_rank)
    torch.set_num_threads(n)
    comm.yield_waits = wait == "yield" or (wait == "auto"
                                           and oversubscribed(masks, comm.local_rank))
    return n

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
    sharing = sum(1 for m in masks if mine & set(m)) or 1
    return max(1, len(mine) // sharing)


def set_threads(requested: int, comm) -> int:
    """Collective over the node. Set torch's intra-op threads: ``requested``, or this
    rank's share of the cores it may run on (:func:`threads_for`)."""
    if hasattr(os, "sched_getaffinity"):
        mask = sorted(os.sched_getaffinity(0))
    else:
        mask = list(range(os.cpu_count() or 1))
    masks = comm.node_allgather(mask)  # every local rank takes part, whatever it requested
    n = requested if requested > 0 else threads_for(masks, comm.local_rank)
    torch.set_num_threads(n)
    return n

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


def set_threads(requested: int, comm) -> int:
    """Set torch's intra-op threads: ``requested``, or the node's cores shared evenly
    among the ranks on the node (at least one)."""
    n = requested
    if n <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        n = max(1, (cores or 1) // max(1, comm.local_size))
    torch.set_num_threads(n)
    return n

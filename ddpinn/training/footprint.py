"""Memory and set-up time of each rank, and their max/mean over ranks for the log.

Large decompositions are limited by what one rank holds: its experts' parameters, its
padded point batch and the process's peak resident memory. Every rank measures its own;
rank 0 reports the maximum and mean over ranks.
"""
from __future__ import annotations

import resource
import sys

import numpy as np

MB = 2.0 ** 20


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB


def tensor_bytes(tensors) -> int:
    """Bytes held by an iterable of tensors."""
    return int(sum(t.numel() * t.element_size() for t in tensors))


def rank_footprint(solver) -> dict:
    """This rank's memory: {"peak_rss", "parameters", "points"} in bytes.

    ``parameters`` counts the local experts and the shared unknowns, ``points`` the padded
    point batch with its weights and targets (:attr:`PointBatch.nbytes`).
    """
    return {"peak_rss": peak_rss_bytes(),
            "parameters": tensor_bytes(solver.parameters()),
            "points": solver.batch.nbytes}


def over_ranks(comm, local: dict) -> dict:
    """Collective. {name: (max, mean)} over all ranks of the per-rank numbers ``local``."""
    names = list(local)  # the same keys in the same order on every rank
    table = np.array(comm.allgather([float(local[n]) for n in names]), dtype=float)
    return {n: (float(table[:, k].max()), float(table[:, k].mean()))
            for k, n in enumerate(names)}


def format_memory(summary: dict) -> str:
    """One log line: peak RSS, parameters and points per rank, max / mean in MB."""
    labels = (("peak_rss", "peak RSS"), ("parameters", "parameters"), ("points", "points"))
    return ", ".join(f"{label} {summary[k][0] / MB:.1f} / {summary[k][1] / MB:.1f} MB"
                     for k, label in labels if k in summary)


def format_times(summary: dict) -> str:
    """One log line of set-up phases, seconds max / mean over ranks."""
    return ", ".join(f"{k.replace('_', ' ')} {mx:.2f} / {mean:.2f} s"
                     for k, (mx, mean) in summary.items())

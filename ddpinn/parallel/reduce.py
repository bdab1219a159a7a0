"""Reductions whose result does not depend on the number of ranks.

Floating-point sums depend on their order, so a sum over experts split over 1, 2 or 4 ranks
differs in the last bits, and L-BFGS amplifies such differences. Here each value is rounded
down onto a grid fixed by the global maximum (a power of two, so the scaling is exact), and
the resulting integers are summed exactly: the result is the same bits on any rank count.
"""
from __future__ import annotations

import numpy as np


def reproducible_sum(comm, values: np.ndarray, n_total: int, int_sum=None) -> np.ndarray:
    """Collective. Sum per-item values over all ranks, bitwise independent of the partition.

    Parameters
    ----------
    values : ndarray, shape (n_local_items, K), float64
        One row per item this rank owns (e.g. per expert).
    n_total : int
        Number of items over all ranks (bounds the integer sum).
    int_sum : callable, optional
        Collective sum of an int64 array over ranks (an allreduce backend); default: ``comm``.

    Returns
    -------
    ndarray, shape (K,): the sums, accurate to about n_total * 2**-62 of the largest term.
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    k = values.shape[1]
    local_max = np.abs(values).max(axis=0) if len(values) else np.zeros(k)
    if not np.all(np.isfinite(local_max)):
        local_max = np.full(k, np.inf)
    gmax = comm.allreduce(local_max, op="max")
    finite = np.isfinite(gmax)
    if not np.all(finite):  # NaN or Inf somewhere: no exactness to preserve
        return comm.allreduce(values.sum(axis=0) if len(values) else np.zeros(k))
    exponent = np.where(gmax > 0, np.frexp(gmax)[1], 0)  # gmax < 2**exponent
    headroom = int(np.ceil(np.log2(max(n_total, 1)))) + 1
    shift = (62 - headroom - exponent).astype(np.int64)
    ints = np.floor(np.ldexp(values, shift)).astype(np.int64) if len(values) \
        else np.zeros((0, k), dtype=np.int64)
    local = ints.sum(axis=0)
    total = int_sum(local) if int_sum is not None else comm.allreduce(local)
    return np.ldexp(total.astype(np.float64), -shift)

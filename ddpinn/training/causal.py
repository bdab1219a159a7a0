"""Causal weights of the residual loss (Wang, Sankaran & Perdikaris, "Respecting causality is
all you need for training physics-informed neural networks", 2022).

The time window is cut into M chunks in temporal order. Chunk i has the mean squared residual
L_i over all interior points in it, over all experts, and the weight

    w_i = exp(-epsilon * sum_{k<i} L_k)        (a constant: no gradient flows through it)

so the residual at later times is trained only once earlier times are resolved. The chunks are
global in time: with a time-slab decomposition one chunk's loss gathers the points of several
experts, so the per-chunk sums are reduced over all ranks with the reproducible sum, and every
rank computes bitwise the same weights on any rank count.

With a schedule of epsilons, the next one is taken once the smallest weight exceeds the
threshold (all times are resolved at the current epsilon).
"""
from __future__ import annotations

import numpy as np
import torch

from ddpinn.parallel.reduce import reproducible_sum


def causal_weights(chunk_losses: np.ndarray, epsilon: float) -> np.ndarray:
    """w_i = exp(-epsilon * sum_{k<i} L_k): (M,) -> (M,); w_0 = 1."""
    losses = np.asarray(chunk_losses, dtype=np.float64)
    before = np.concatenate([[0.0], np.cumsum(losses)[:-1]])
    return np.exp(-epsilon * before)


def chunk_of(t: np.ndarray, t0: float, t1: float, chunks: int) -> np.ndarray:
    """Chunk index of each time, in [0, chunks): equal chunks of [t0, t1], t1 in the last."""
    idx = np.floor((np.asarray(t, dtype=np.float64) - t0) / (t1 - t0) * chunks)
    return np.clip(idx, 0, chunks - 1).astype(np.int64)


class CausalWeights:
    """Per-row causal weights of the residual loss of a rank's experts.

    Parameters
    ----------
    section : CausalSection (chunks, epsilon list, threshold)
    t_range : (t0, t1), the global time window
    time_axis : int, the column of t in the points
    comm : Comm or SerialComm
    n_total : int, number of experts over all ranks (bounds the reproducible sums)

    The weights are computed at the first evaluation after :meth:`begin_step` and held for
    the rest of the step, so an L-BFGS line search compares values of one objective.
    """

    def __init__(self, section, t_range, time_axis: int, comm, n_total: int):
        self.chunks = int(section.chunks)
        self.epsilons = list(section.epsilon)
        self.threshold = float(section.threshold)
        self.t0, self.t1 = float(t_range[0]), float(t_range[1])
        self.time_axis, self.comm, self.n_total = time_axis, comm, n_total
        self.epsilon_index = 0
        self.weights = None  # (M,) held for the current step
        self.chunk_losses = None  # (M,) at the last computation

    @property
    def epsilon(self) -> float:
        return self.epsilons[self.epsilon_index]

    def assign(self, x: torch.Tensor, res_w: torch.Tensor) -> None:
        """Chunk of every row, for new points x (E, N, d) with residual weights res_w (E, N)."""
        t = x[..., self.time_axis].detach().double().cpu().numpy()
        self.row_chunk = chunk_of(t, self.t0, self.t1, self.chunks)  # (E, N)
        self.interior = (res_w.detach().cpu().numpy() > 0)  # (E, N)

    def begin_step(self) -> None:
        """Take new weights at the next evaluation (called once per optimizer step)."""
        self.weights = None

    def __call__(self, res_sq: torch.Tensor) -> torch.Tensor:
        """Collective (unless the step's weights are already held). Row weights (E, N).

        Parameters
        ----------
        res_sq : Tensor (E, N), squared residual norm per row (detached)
        """
        if self.weights is None:
            self.chunk_losses = self._chunk_losses(res_sq)
            self.weights = causal_weights(self.chunk_losses, self.epsilon)
            # All times resolved at this epsilon: a harder one from the next step on.
            if self.weights.min() > self.threshold and \
                    self.epsilon_index + 1 < len(self.epsilons):
                self.epsilon_index += 1
        return torch.as_tensor(self.weights[self.row_chunk], dtype=res_sq.dtype,
                               device=res_sq.device)

    def _chunk_losses(self, res_sq: torch.Tensor) -> np.ndarray:
        """Collective. Global mean squared residual per chunk, (M,)."""
        r = res_sq.detach().double().cpu().numpy()
        m = self.chunks
        local = np.zeros((len(r), 2 * m))
        for e in range(len(r)):  # bincount sums each expert in row order, whatever E is
            rows = self.interior[e]
            local[e, :m] = np.bincount(self.row_chunk[e, rows], weights=r[e, rows], minlength=m)
            local[e, m:] = np.bincount(self.row_chunk[e, rows], minlength=m)
        totals = reproducible_sum(self.comm, local, self.n_total)
        sums, counts = totals[:m], totals[m:]
        return np.divide(sums, counts, out=np.zeros(m), where=counts > 0)

    # -- checkpoint state ------------------------------------------------------------------
    def state(self) -> dict:
        return {"causal_epsilon_index": self.epsilon_index}

    def load_state(self, scalars: dict) -> None:
        self.epsilon_index = min(int(scalars.get("causal_epsilon_index", 0)),
                                 len(self.epsilons) - 1)
        self.weights = None

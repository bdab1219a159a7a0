"""L-BFGS as one algorithm over all experts, whatever the rank count.

Parameters are split into *distributed* tensors (each rank holds the experts it owns;
inner products are summed over ranks) and *shared* tensors (identical on every rank;
counted once). Every scalar that steers the algorithm (inner products, the loss in the line
search) is global, so every rank takes the same branches and the same number of
evaluations.

The two-loop recursion runs on the Gram matrix of the basis [s_1..s_k, y_1..y_k, g]
("vector-free" L-BFGS): the direction is a combination of basis vectors whose coefficients
come from inner products only, and the Gram matrix is updated from one allreduce of 2k+2
numbers per iteration instead of one allreduce per inner product.
"""
from __future__ import annotations

import numpy as np
import torch

from ddpinn.nn.batched import bmm
from ddpinn.parallel.reduce import reproducible_sum


class DistributedLBFGS:
    """L-BFGS with a backtracking (Armijo) line search on the global loss.

    Parameters
    ----------
    distributed : list of Tensor (the local experts' parameters, expert on axis 0)
    shared : list of Tensor (replicated parameters, gradients already summed)
    comm : Comm
    n_experts : int, number of experts over all ranks
    lr : float, initial step length
    history : int, number of (s, y) pairs kept
    max_evals : int, loss evaluations per line search
    """

    def __init__(self, distributed, shared, comm, n_experts, lr=1.0, history=50, max_evals=25,
                 c1=1e-4, backtrack=0.5):
        self.dist_params = list(distributed)
        self.shared_params = list(shared)
        self.comm = comm
        self.n_experts = n_experts  # over all ranks
        self.lr = lr
        self.history = history
        self.max_evals = max_evals
        self.c1 = c1
        self.backtrack = backtrack
        self.s, self.y, self.rho = [], [], []
        self.n_iter = 0
        self._current = None  # (loss, grads) at the current point, from the last line search
        self._gram = None  # Gram matrix of [s..., y..., g] (global inner products)

    # -- vector algebra over (distributed, shared) tensor lists ---------------------------
    @property
    def params(self):
        return self.dist_params + self.shared_params

    def _grads(self):
        return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                for p in self.params]

    def _set_(self, start, alpha, direction):
        """params = start + alpha * direction (exactly ``start`` for alpha = 0)."""
        with torch.no_grad():
            for p, x0, d in zip(self.params, start, direction):
                p.copy_(x0 + alpha * d if alpha else x0)

    def _basis(self, g):
        return self.s + self.y + [g]

    def _full_gram(self, g) -> np.ndarray:
        """Collective. Gram matrix of the basis from scratch (after a restart or restore)."""
        basis = self._basis(g)
        return self._dots_many(basis, basis)

    def _coefficients(self, G: np.ndarray) -> np.ndarray:
        """Two-loop recursion for -H g in basis coefficients (no communication)."""
        k = len(self.s)
        delta = np.zeros(2 * k + 1)
        delta[2 * k] = -1.0
        alphas = []
        for i in reversed(range(k)):
            a = self.rho[i] * (G[i] @ delta)
            alphas.append(a)
            delta[k + i] -= a
        if k:
            delta *= G[k - 1, 2 * k - 1] / G[2 * k - 1, 2 * k - 1]  # s.y / y.y
        for i in range(k):
            b = self.rho[i] * (G[k + i] @ delta)
            delta[i] += alphas[k - 1 - i] - b
        return delta

    def step(self, closure):
        """Collective. One L-BFGS iteration.

        ``closure()`` must zero the gradients, compute the global loss, backpropagate
        (with shared gradients summed over ranks) and return the global loss as a float.
        Returns the global loss at the new point.
        """
        if self._current is None:
            loss = closure()
            g = self._grads()
            self._gram = None
        else:
            # The accepted point of the last line search was evaluated there already.
            loss, g = self._current
        if self._gram is None:
            self._gram = self._full_gram(g)
        G = self._gram
        delta = self._coefficients(G)
        gtd = float(G[-1] @ delta)
        if gtd > -1e-30 or not np.isfinite(gtd):  # not a descent direction: steepest descent
            self.s, self.y, self.rho = [], [], []
            G = self._gram = G[-1:, -1:]
            delta = np.array([-1.0])
            gtd = -float(G[0, 0])
        basis = self._basis(g)
        d = sum_direction(delta, basis)
        if self.s:
            t = self.lr  # the history scales the direction
        else:
            # Steepest descent (first iteration or after a reset): scale by the gradient.
            t = min(1.0, 1.0 / max(float(np.sqrt(G[0, 0])), 1e-30)) * self.lr
        new_loss = loss
        accepted = False
        start = [p.detach().clone() for p in self.params]
        for _ in range(self.max_evals):
            self._set_(start, t, d)
            new_loss = closure()
            if new_loss <= loss + self.c1 * t * gtd:
                accepted = True
                break
            t *= self.backtrack
        if not accepted:
            self._set_(start, 0.0, d)
            new_loss = closure()  # gradients at the current point again
            self._current = (new_loss, self._grads())
            self.s, self.y, self.rho = [], [], []
            self._gram = None
            self.n_iter += 1
            return new_loss
        g_new = self._grads()
        self._current = (new_loss, g_new)
        self._update(G, delta, t, d, basis, g, g_new)
        self.n_iter += 1
        return new_loss

    def _update(self, G, delta, t, d, basis, g, g_new):
        """Collective (one allreduce). New history pair and Gram matrix after a step t*d.

        The inner products of the three new vectors (s, y, g_new) with the basis and with
        each other are computed directly, not by differences of old ones, which would cancel.
        """
        n = len(basis)  # 2k + 1, the last one is g
        s = [t * x for x in d]
        y = [a - b for a, b in zip(g_new, g)]
        new = [s, y, g_new]
        targets = basis + new
        flat = self._dots_many(new, targets)  # (3, n + 3)
        M = np.zeros((n + 3, n + 3))
        M[:n, :n] = G
        M[n:, :] = flat
        M[:, n:] = flat.T
        sy, yy = M[n, n + 1], M[n + 1, n + 1]
        k = len(self.s)
        s_idx, y_idx = list(range(k)), list(range(k, 2 * k))
        # Curvature condition, relative so that small steps in float32 still count.
        if sy > 1e-10 * yy:
            if k == self.history:
                self.s.pop(0), self.y.pop(0), self.rho.pop(0)
                s_idx, y_idx = s_idx[1:], y_idx[1:]
            self.s.append(s)
            self.y.append(y)
            self.rho.append(1.0 / float(sy))
            s_idx, y_idx = s_idx + [n], y_idx + [n + 1]
        order = s_idx + y_idx + [n + 2]
        self._gram = M[np.ix_(order, order)]

    def _dots_many(self, rows, cols) -> np.ndarray:
        """Collective. Global inner products rows[i] . cols[j], shape (len(rows), len(cols)).

        Distributed tensors have the expert on axis 0: each expert's share is computed on
        its own and the shares are summed by :func:`reproducible_sum`, so the result is the
        same bits on any rank count (L-BFGS would amplify last-bit differences).
        """
        nd = len(self.dist_params)
        n_local = self.dist_params[0].shape[0] if nd else 0
        per_expert = np.zeros((n_local, len(rows), len(cols)))
        for j in range(nd):
            R = torch.stack([v[j].reshape(n_local, -1) for v in rows]).double()
            C = torch.stack([v[j].reshape(n_local, -1) for v in cols]).double()
            # (e, r, p) @ (e, p, c): one batched product, each expert's bits the same for
            # any number of local experts.
            per_expert += bmm(R.transpose(0, 1), C.permute(1, 2, 0)).cpu().numpy()
        total = reproducible_sum(self.comm, per_expert.reshape(n_local, -1), self.n_experts)
        total = total.reshape(len(rows), len(cols))
        for j in range(nd, len(rows[0])):
            R = torch.stack([v[j].reshape(-1) for v in rows]).double()
            C = torch.stack([v[j].reshape(-1) for v in cols]).double()
            total += (R @ C.T).cpu().numpy()
        return total

    # -- checkpoint support: history split by expert -------------------------------------
    def forget_current(self) -> None:
        """Call when the loss function changed (new points): re-evaluate at the next step."""
        self._current = None

    def load_state(self, state: dict) -> None:
        self.s, self.y = state["s"], state["y"]
        self.rho, self.n_iter = list(state["rho"]), int(state["n_iter"])
        self._current = self._gram = None


def sum_direction(coefficients, basis):
    """sum_j c_j basis_j for tensor-list vectors."""
    return [sum(float(c) * b[j] for c, b in zip(coefficients, basis))
            for j in range(len(basis[0]))]

"""L-BFGS as one algorithm over all experts, whatever the rank count.

Parameters are split into *distributed* tensors (each rank holds the experts it owns;
inner products are summed over ranks) and *shared* tensors (identical on every rank;
counted once). Every scalar that steers the algorithm (inner products, the loss in the line
search) is global, so every rank takes the same branches and the same number of
evaluations.
"""
from __future__ import annotations

import torch


class DistributedLBFGS:
    """L-BFGS with a backtracking (Armijo) line search on the global loss.

    Parameters
    ----------
    distributed : list of Tensor (the local experts' parameters)
    shared : list of Tensor (replicated parameters, gradients already summed)
    comm : Comm
    lr : float, initial step length
    history : int, number of (s, y) pairs kept
    max_evals : int, loss evaluations per line search
    """

    def __init__(self, distributed, shared, comm, lr=1.0, history=50, max_evals=25,
                 c1=1e-4, backtrack=0.5):
        self.dist_params = list(distributed)
        self.shared_params = list(shared)
        self.comm = comm
        self.lr = lr
        self.history = history
        self.max_evals = max_evals
        self.c1 = c1
        self.backtrack = backtrack
        self.s, self.y, self.rho = [], [], []
        self.n_iter = 0
        self._current = None  # (loss, grads) at the current point, from the last line search

    # -- vector algebra over (distributed, shared) tensor lists ---------------------------
    @property
    def params(self):
        return self.dist_params + self.shared_params

    def _dot(self, a, b) -> float:
        """Collective. Global inner product."""
        nd = len(self.dist_params)
        local = sum(float((x * y).sum()) for x, y in zip(a[:nd], b[:nd]))
        shared = sum(float((x * y).sum()) for x, y in zip(a[nd:], b[nd:]))
        return self.comm.allreduce(local) + shared

    def _grads(self):
        return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                for p in self.params]

    def _set_(self, start, alpha, direction):
        """params = start + alpha * direction (exactly ``start`` for alpha = 0)."""
        with torch.no_grad():
            for p, x0, d in zip(self.params, start, direction):
                p.copy_(x0 + alpha * d if alpha else x0)

    def _direction(self, g):
        """Two-loop recursion: -H g."""
        q = [-x for x in g]
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            a = rho * self._dot(s, q)
            alphas.append(a)
            q = [qi - a * yi for qi, yi in zip(q, y)]
        if self.s:
            gamma = self._dot(self.s[-1], self.y[-1]) / self._dot(self.y[-1], self.y[-1])
            q = [gamma * qi for qi in q]
        for s, y, rho, a in zip(self.s, self.y, self.rho, reversed(alphas)):
            b = rho * self._dot(y, q)
            q = [qi + (a - b) * si for qi, si in zip(q, s)]
        return q

    def step(self, closure):
        """Collective. One L-BFGS iteration.

        ``closure()`` must zero the gradients, compute the global loss, backpropagate
        (with shared gradients summed over ranks) and return the global loss as a float.
        Returns the global loss at the new point.
        """
        if self._current is None:
            loss = closure()
            g = self._grads()
        else:
            # The accepted point of the last line search was evaluated there already.
            loss, g = self._current
        d = self._direction(g)
        gtd = self._dot(g, d)
        if gtd > -1e-30:  # not a descent direction: restart from steepest descent
            self.s, self.y, self.rho = [], [], []
            d = [-x for x in g]
            gtd = self._dot(g, d)
        if self.s:
            t = self.lr  # the history scales the direction
        else:
            # Steepest descent (first iteration or after a reset): scale by the gradient.
            nd = len(self.dist_params)
            gnorm1 = self.comm.allreduce(sum(float(x.abs().sum()) for x in g[:nd])) \
                + sum(float(x.abs().sum()) for x in g[nd:])
            t = min(1.0, 1.0 / max(gnorm1, 1e-30)) * self.lr
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
            self.n_iter += 1
            return new_loss
        g_new = self._grads()
        self._current = (new_loss, g_new)
        s = [t * x for x in d]
        y = [a - b for a, b in zip(g_new, g)]
        ys = self._dot(y, s)
        # Curvature condition, relative so that small steps in float32 still count.
        if ys > 1e-10 * self._dot(y, y):
            if len(self.s) == self.history:
                self.s.pop(0), self.y.pop(0), self.rho.pop(0)
            self.s.append(s)
            self.y.append(y)
            self.rho.append(1.0 / ys)
        self.n_iter += 1
        return new_loss

    # -- checkpoint support: history split by expert -------------------------------------
    def forget_current(self) -> None:
        """Call when the loss function changed (new points): re-evaluate at the next step."""
        self._current = None

    def load_state(self, state: dict) -> None:
        self.s, self.y = state["s"], state["y"]
        self.rho, self.n_iter = list(state["rho"]), int(state["n_iter"])

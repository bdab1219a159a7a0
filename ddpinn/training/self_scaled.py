"""Self-scaled quasi-Newton methods (SSBFGS, SSBroyden) with a dense, distributed inverse Hessian.

Both update a dense approximation H of the inverse Hessian over *all* parameters, as the
published methods do (Al-Baali's self-scaled Broyden family, used for PINNs by Urbán,
Stefanou & Pons 2025 and Kiyani et al. 2025). After a step s = x_{k+1} - x_k with gradient
change y = g_{k+1} - g_k:

    H+ = (H - (H y)(H y)^T / (y^T H y) + phi (y^T H y) v v^T) / tau + s s^T / (s^T y),
    v  = s / (s^T y) - H y / (y^T H y),

with b = -t s^T g_k / (s^T y) (t the accepted step length; b = s^T B s / s^T y for B = H^-1),
h = y^T H y / (s^T y) and a = b h - 1:

* ``ssbfgs``: phi = 1 (BFGS) and tau = min(1, 1/b); the first update after H = I takes
  tau = h, the usual initial scaling of the identity;
* ``ssbroyden``: phi = (1 - theta) / (1 + a theta) with theta clipped to
  [(rho_m - 1)/a, 1/rho_m] around (1 - b)/b, rho_m = min(1, h (1 - c)), c = sqrt(|a/(1+a)|);
  tau = h / (1 + a theta) on the first update, then min(rho_b sigma^(1/(1-N)), sigma)
  for theta <= 0 and rho_b min(sigma^(1/(1-N)), 1/theta) otherwise, with sigma = 1 + a theta,
  rho_b = min(1, 1/b) and N the number of parameters.

The step is x+ = x + t d, d = -H g, with the same Armijo backtracking line search on the
global loss as :mod:`ddpinn.training.lbfgs`; a step whose loss does not decrease enough is
never taken, and a direction that is not a descent direction (or not finite) resets H to I.

Distribution. Columns of H are global, in sid order: expert ``sid`` owns columns
[sid P_e, (sid + 1) P_e), the shared parameters the last P_s columns (n = S P_e + P_s).
Each rank holds the rows of its own experts, ``H_dist`` of shape (E, P_e, n), and every rank
the rows of the shared parameters, ``H_shared`` (P_s, n), all in float64. A product H v needs
the whole vector v: every rank's expert blocks are gathered in sid order (one allgather through
the communicator wrapper). Each expert's rows are multiplied with :func:`ddpinn.nn.batched.bmm`
and updated elementwise, so an expert's bits do not depend on how many experts its rank owns;
inner products are per expert, summed by :func:`~ddpinn.parallel.reduce.reproducible_sum`.
1, 2 and 4 ranks therefore take the same steps bitwise. A checkpoint stores each expert's
rows with the expert (keyed by sid), so a run resumes on any rank count.

Cost: a rank holds (E P_e + P_s) x n float64 numbers, updated in place (a division and a
rank-3 GEMM, no temporary of the matrix's size); a step reads them three times and moves
three full vectors of n to every rank; :meth:`SelfScaled.memory_bytes`
lets the memory check refuse a case that cannot fit before anything is built. This suits the
small networks of PINN experts (n of a few thousand to a few ten thousands); larger cases use
``lbfgs``.

Why dense, not a limited-memory variant (the scaling entering the two-loop recursion of
:mod:`ddpinn.training.lbfgs`): the published methods are dense, their gain over L-BFGS comes
from the curvature that a dense H accumulates over all steps, and the shipped cases are small
(``poisson2d``: n = 8964, 0.64 GB of H on one rank). Measured there (float64, 300 steps
after the same Adam warm-up, BENCHMARKS.md "Quasi-Newton stages"): SSBFGS and SSBroyden end at
a 7.6x and 21.5x lower loss and a 3.5x and 6.7x lower error than ``lbfgs``, at about 4x the
time per step. A
limited-memory variant is not built.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ddpinn.nn.batched import bmm
from ddpinn.parallel.reduce import reproducible_sum
from ddpinn.training.optimizers import LineSearchAdapter, register_optimizer


class DenseSelfScaled:
    """Self-scaled quasi-Newton iteration over distributed and shared parameters.

    Parameters
    ----------
    distributed : list of Tensor (E, ...), the local experts' parameters
    shared : list of Tensor, replicated parameters (gradients already summed over ranks)
    comm : Comm, over one replica of every expert (collectives: allgather, allreduce)
    sids : sequence of int (E,), the subdomain ids of the local experts, in row order
    n_experts : int, S, the number of experts over all ranks
    variant : "ssbfgs" or "ssbroyden"
    lr : float, step length tried first (1: the quasi-Newton step)
    max_evals : int, loss evaluations per line search
    """

    def __init__(self, distributed, shared, comm, sids, n_experts, variant="ssbfgs", lr=1.0,
                 max_evals=25, c1=1e-4, backtrack=0.5):
        if variant not in SCALINGS:
            raise ValueError(f"self-scaled variant {variant!r}: allowed {sorted(SCALINGS)}")
        self.dist_params, self.shared_params = list(distributed), list(shared)
        self.comm, self.sids, self.n_experts = comm, [int(s) for s in sids], int(n_experts)
        self.variant, self.lr, self.max_evals = variant, lr, max_evals
        self.c1, self.backtrack = c1, backtrack
        self.n_local = len(self.sids)
        self.p_expert = sum(p[0].numel() for p in self.dist_params)  # every rank owns >= 1
        self.p_shared = sum(p.numel() for p in self.shared_params)
        self.n = self.n_experts * self.p_expert + self.p_shared
        self.n_iter = 0
        self.fresh = True  # H = I: the next update takes the initial scaling
        self._current = None  # (loss, g) at the current point, from the last line search
        self.reset()

    # -- flat float64 vectors: (dist (E, P_e), shared (P_s,)) ------------------------------
    def _flat(self, tensors):
        nd = len(self.dist_params)
        dist = [t.detach().reshape(self.n_local, -1).double() for t in tensors[:nd]]
        shared = [t.detach().reshape(-1).double() for t in tensors[nd:]]
        d = torch.cat(dist, 1) if dist else torch.zeros(self.n_local, 0, dtype=torch.float64)
        s = torch.cat(shared) if shared else torch.zeros(0, dtype=torch.float64)
        return d, s

    def _unflat(self, vec):
        """(dist, shared) -> tensor list shaped and typed like the parameters."""
        out, (d, s) = [], vec
        offset = 0
        for p in self.dist_params:
            k = p[0].numel()
            out.append(d[:, offset:offset + k].reshape(p.shape).to(p))
            offset += k
        offset = 0
        for p in self.shared_params:
            out.append(s[offset:offset + p.numel()].reshape(p.shape).to(p))
            offset += p.numel()
        return out

    def _grad(self):
        return self._flat([p.grad if p.grad is not None else torch.zeros_like(p)
                           for p in self.dist_params + self.shared_params])

    def _gather(self, vecs):
        """Collective (one allgather). Full vectors (n,) of local ``(dist, shared)`` pairs."""
        mine = (self.sids, [v[0].cpu().numpy() for v in vecs])
        full = [np.zeros((self.n_experts, self.p_expert)) for _ in vecs]
        for sids, blocks in self.comm.allgather(mine):
            for f, b in zip(full, blocks):
                f[sids] = b
        return [torch.cat([torch.from_numpy(f.reshape(-1)), v[1]]) for f, v in zip(full, vecs)]

    def _dots(self, pairs) -> np.ndarray:
        """Collective. Global inner products a . b for each pair, shape (len(pairs),)."""
        per_expert = np.zeros((self.n_local, len(pairs)))
        for j, (a, b) in enumerate(pairs):
            # (E, 1, P) @ (E, P, 1): each expert's bits the same for any E.
            per_expert[:, j] = bmm(a[0].unsqueeze(1), b[0].unsqueeze(2)).reshape(-1).numpy()
        total = reproducible_sum(self.comm, per_expert, self.n_experts)
        for j, (a, b) in enumerate(pairs):
            if a[1].numel():  # the same bits on every rank, whatever its thread count
                total[j] += float(bmm(a[1].view(1, 1, -1), b[1].view(1, -1, 1)))
        return total

    def _matvec(self, full: torch.Tensor):
        """H v for a full vector v (n,): this rank's rows, as a ``(dist, shared)`` pair."""
        v = full.expand(self.n_local, -1).unsqueeze(2).contiguous()  # (E, n, 1)
        d = bmm(self.H_dist, v).squeeze(2)
        s = torch.zeros(0, dtype=torch.float64)
        if self.p_shared:  # one row per batch item: bits independent of the thread count
            w = full.expand(self.p_shared, -1).unsqueeze(2).contiguous()
            s = bmm(self.H_shared.unsqueeze(1), w).reshape(-1)
        return d, s

    def reset(self) -> None:
        """H = I (this rank's rows of it)."""
        E, P, S = self.n_local, self.p_expert, self.n_experts
        self.H_dist = torch.zeros(E, P, self.n, dtype=torch.float64)
        for e, sid in enumerate(self.sids):
            self.H_dist[e, torch.arange(P), sid * P + torch.arange(P)] = 1.0
        self.H_shared = torch.zeros(self.p_shared, self.n, dtype=torch.float64)
        self.H_shared[torch.arange(self.p_shared), S * P + torch.arange(self.p_shared)] = 1.0
        self.fresh = True

    # -- the iteration --------------------------------------------------------------------
    def _set_(self, start, alpha, direction):
        """params = start + alpha * direction (exactly ``start`` for alpha = 0)."""
        with torch.no_grad():
            for p, x0, d in zip(self.dist_params + self.shared_params, start, direction):
                p.copy_(x0 + alpha * d if alpha else x0)

    def _direction(self, g):
        """Collective. (d = -H g, g . d, step length to try); H = I where d is no descent."""
        d = _scale(self._matvec(self._gather([g])[0]), -1.0)
        gtd = float(self._dots([(g, d)])[0])
        if not (gtd < 0 and math.isfinite(gtd)) and not self.fresh:
            self.reset()
            d = _scale(g, -1.0)
            gtd = float(self._dots([(g, d)])[0])
        if self.fresh:  # steepest descent: scale the first step by the gradient
            return d, gtd, min(1.0, 1.0 / max(math.sqrt(max(-gtd, 0.0)), 1e-30)) * self.lr
        return d, gtd, self.lr

    def step(self, closure):
        """Collective. One iteration; ``closure()`` zeroes the gradients, evaluates the global
        loss, backpropagates and returns the loss (float). Returns the loss at the new point."""
        if self._current is None:
            loss = closure()
            self._current = (loss, self._grad())
        loss, g = self._current
        d, gtd, t = self._direction(g)
        start = [p.detach().clone() for p in self.dist_params + self.shared_params]
        direction = self._unflat(d)
        for _ in range(self.max_evals):
            self._set_(start, t, direction)
            new_loss = closure()
            if new_loss <= loss + self.c1 * t * gtd:  # False for NaN: rejected
                break
            t *= self.backtrack
        else:  # no decrease found: stay, and start again from H = I
            self._set_(start, 0.0, direction)
            new_loss = closure()
            self._current = (new_loss, self._grad())
            self.reset()
            self.n_iter += 1
            return new_loss
        g_new = self._grad()
        self._current = (new_loss, g_new)
        self._update(_scale(d, t), _sub(g_new, g), g, t)
        self.n_iter += 1
        return new_loss

    def _update(self, s, y, g, t) -> None:
        """Collective. The self-scaled update of H after the step s with gradient change y."""
        y_full, s_full = self._gather([y, s])
        hy = self._matvec(y_full)
        sy, yhy, sg, yy = self._dots([(s, y), (y, hy), (s, g), (y, y)])
        if not (sy > 1e-10 * yy and yhy > 0 and np.isfinite([sy, yhy, sg, yy]).all()):
            return  # curvature condition fails (Armijo alone does not ensure it): keep H
        rho = 1.0 / sy
        tau, phi = SCALINGS[self.variant](b=-t * sg * rho, h=yhy * rho, first=self.fresh,
                                          n=self.n)
        if not (math.isfinite(tau) and math.isfinite(phi) and tau > 0):
            return
        hy_full = self._gather([hy])[0]
        v = _sub(_scale(s, rho), _scale(hy, 1.0 / yhy))
        v_full = s_full * rho - hy_full / yhy
        # H+ = H / tau + U W^T, a rank-3 update of this rank's rows: U (rows, 3) holds the
        # rows' entries of (H y, v, s), W (3, n) the full vectors with their coefficients.
        w = torch.stack([hy_full * (-1.0 / (tau * yhy)), v_full * (phi * yhy / tau),
                         s_full * rho])
        for rows, u in ((self.H_dist, torch.stack([hy[0], v[0], s[0]], 2)),
                        (self.H_shared.unsqueeze(0), torch.stack([hy[1], v[1], s[1]], 1)[None])):
            rows.div_(tau)
            # In place, one pass, no temporary of the matrix's size. A contraction of 3
            # gives a single GEMM the batched kernel's bits (ddpinn.nn.batched), so each
            # expert's rows do not depend on E.
            rows.baddbmm_(u, w.expand(len(rows), -1, -1).contiguous())
        self.fresh = False

    def forget_current(self) -> None:
        """The loss function changed: re-evaluate at the next step."""
        self._current = None


def _scale(vec, a: float):
    return vec[0] * a, vec[1] * a


def _sub(u, v):
    return u[0] - v[0], u[1] - v[1]


def _ssbfgs_scaling(b: float, h: float, first: bool, n: int):
    """(tau, phi) of SSBFGS: the BFGS update (phi = 1) scaled by min(1, 1/b)."""
    return (h if first else min(1.0, 1.0 / b)), 1.0


def _ssbroyden_scaling(b: float, h: float, first: bool, n: int):
    """(tau, phi) of SSBroyden: theta (hence phi) and tau from b, h and a = b h - 1."""
    a = b * h - 1.0
    if abs(a) < 1e-12:  # H y is parallel to s: every member of the family agrees
        return _ssbfgs_scaling(b, h, first, n)
    c = math.sqrt(abs(a / (1.0 + a)))
    rho_m = min(1.0, h * (1.0 - c))
    theta = max((rho_m - 1.0) / a, min(1.0 / rho_m, (1.0 - b) / b))
    sigma = 1.0 + a * theta
    phi = (1.0 - theta) / sigma
    if first:
        return h / sigma, phi
    rho_b = min(1.0, 1.0 / b)
    root = abs(sigma) ** (1.0 / (1.0 - n)) if n > 1 else 1.0
    tau = min(rho_b * root, sigma) if theta <= 0 else rho_b * min(root, 1.0 / theta)
    return tau, phi


#: (tau, phi) of each variant, from b, h, whether H = I, and n.
SCALINGS = {"ssbfgs": _ssbfgs_scaling, "ssbroyden": _ssbroyden_scaling}


class SelfScaled(LineSearchAdapter):
    """Adapter of :class:`DenseSelfScaled` (subclassed once per variant below). Like
    ``lbfgs``: many loss evaluations per step (the line search), the step recorded at the
    accepted point; the step length is the stage's ``lr`` times the back-off, schedules do
    not apply. ``stages.max_evals`` bounds the line search; ``stages.history`` is unused (H
    is dense)."""

    default_lr = 1.0

    def __init__(self, solver, stage, lr):
        super().__init__(solver, stage, lr)
        self.opt = DenseSelfScaled(list(solver.model.parameters()),
                                   list(solver.shared.parameters()), solver.layout.peer_comm,
                                   solver.sids, solver.decomposition.n_subdomains,
                                   variant=self.name, lr=lr, max_evals=stage.max_evals)

    def state(self, named_dist, named_shared):
        o, key = self.opt, self.name
        return ({f"{key}/H": o.H_dist}, {f"{key}/H_shared": o.H_shared},
                {f"{key}_n_iter": o.n_iter, f"{key}_fresh": o.fresh})

    def load_state(self, dist, shared, scalars, named_dist, named_shared):
        o, key = self.opt, self.name
        if f"{key}_n_iter" not in scalars:
            return
        H, Hs = dist[f"{key}/H"], shared[f"{key}/H_shared"]
        if tuple(H.shape) != tuple(o.H_dist.shape) or tuple(Hs.shape) != tuple(o.H_shared.shape):
            raise ValueError(f"checkpointed {key} matrix has shape {tuple(H.shape)} but this "
                             f"case needs {tuple(o.H_dist.shape)}")
        o.H_dist, o.H_shared = H.double().clone(), Hs.double().clone()
        o.n_iter, o.fresh = int(scalars[f"{key}_n_iter"]), bool(scalars[f"{key}_fresh"])
        o.forget_current()

    @classmethod
    def memory_bytes(cls, stage, params, largest_param, n_params=None):
        """The rank's rows of H (float64) and a dozen full-length vectors. ``n_params``:
        (parameters on this rank, over all experts); without it, the rank's parameters alone
        are counted (as float32, one expert per rank)."""
        local, total = n_params if n_params else (params / 4, params / 4)
        return 8.0 * local * total + 12 * 8 * total


@register_optimizer("ssbfgs")
class SSBFGS(SelfScaled):
    """Self-scaled BFGS with a dense inverse Hessian (see the module docstring)."""


@register_optimizer("ssbroyden")
class SSBroyden(SelfScaled):
    """Self-scaled Broyden with a dense inverse Hessian (see the module docstring)."""

"""Per-expert block linear algebra of the Gauss-Newton steps: Gram matrices, damped
Cholesky factors and solves, each expert on its own storage and one thread so that its bits
depend neither on how many experts a rank owns nor on the thread count. Used by the block
step (:mod:`ddpinn.training.gauss_newton`) and as the preconditioner of the coupled one
(:mod:`ddpinn.training.gn_coupling`).
"""
from __future__ import annotations

import contextlib
import math

import torch

from ddpinn.nn.batched import bmm


@contextlib.contextmanager
def one_thread():
    """torch on one thread inside the block (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _own(t: torch.Tensor, e: int) -> torch.Tensor:
    """Expert e's slice (1, ...) as a fresh float64 tensor. MKL/LAPACK round differently
    for operands at different addresses modulo the vector width, so each expert's matrices
    get their own (aligned) storage instead of an offset into the rank's batch, whose
    offset would depend on how many experts the rank owns."""
    return t[e:e + 1].to(torch.float64, copy=True)


def matvec(Je: torch.Tensor, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """One expert's product J_e x, or J_e^T x with ``transpose``: Je (1, M, P) and x (1, P)
    -> (1, M), or x (1, M) -> (1, P).

    A plain matrix-vector product on one thread. The Gauss-Newton products are always taken
    per expert on the expert's own storage (:func:`_own`), so their bits do not depend on
    how many experts a rank owns, and one thread keeps them independent of the thread count;
    the batched kernel's bits (:func:`ddpinn.nn.batched.bmm`) are not needed here and cost
    ten times more for a matrix-vector product."""
    A = Je[0].t() if transpose else Je[0]
    with one_thread():
        return torch.mv(A, x[0])[None]


def expert_blocks(J: torch.Tensor):
    """Gram matrix of every expert, in float64: a list of (1, n, n).

    J (E, M, P) -> ``(gram, space)``: ``space`` is "parameter" (gram = J^T J, n = P) or
    "sample" (gram = J J^T, n = M), the smaller system."""
    M, P = J.shape[1:]
    return gram_blocks([_own(J, e) for e in range(J.shape[0])], M, P)


def gram_blocks(Js: list, M: int, P: int):
    """:func:`expert_blocks` of the experts' own Jacobians ``Js`` (1, M, P) each
    (:func:`_own`)."""
    ts = [Je.transpose(1, 2) for Je in Js]
    gram = [bmm(t, Je) if M >= P else bmm(Je, t) for t, Je in zip(ts, Js)]
    return gram, ("parameter" if M >= P else "sample")


def damped_factors(gram, lam: float) -> list:
    """Cholesky factor of every expert's damped Gram matrix ``gram_e + lam I``: a list of
    (1, n, n), None where it is not positive definite in floating point. On one thread
    (LAPACK splits a blocked factorisation over its threads, and its bits then depend on
    their number), each on its own storage (see :func:`_own`)."""
    out = []
    for A in gram:
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        with one_thread():
            L, info = torch.linalg.cholesky_ex(A + lam * eye)
        out.append(None if int(info.max()) else L)
    return out


def factor_solve(L, rhs: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^-1 rhs`` for one expert's factor (1, n, n) and rhs (1, n, c); NaN where the
    factorisation failed (L None)."""
    if L is None:
        return torch.full_like(rhs, math.nan)
    with one_thread():
        return torch.cholesky_solve(rhs, L)


def damped_solve(J, gram, space, Y, lam: float, factors=None) -> list:
    """``(J_e^T J_e + lam I)^-1 J_e^T Y_e`` for every expert: a list of (1, P, c).

    Y (E, M, c). In sample space through ``J^T (J J^T + lam I)^-1 Y`` (the same).
    ``factors``: those of :func:`damped_factors` for ``lam`` (None: factorised here).
    Each expert's bits depend neither on how many experts a rank owns nor on its thread
    count (:func:`damped_factors`)."""
    factors = damped_factors(gram, lam) if factors is None else factors
    out = []
    for e, L in enumerate(factors):
        Je, Ye = _own(J, e), _own(Y, e)
        rhs = bmm(Je.transpose(1, 2), Ye) if space == "parameter" else Ye
        z = factor_solve(L, rhs)  # no factor: no step (NaN)
        out.append(z if space == "parameter" else bmm(Je.transpose(1, 2), z))
    return out


def damped_step(J, gram, space, r, lam: float) -> torch.Tensor:
    """The LM step of every expert for damping ``lam``: (E, P), float64 (no shared
    unknowns; see :meth:`LMCore.solve`)."""
    z = damped_solve(J, gram, space, r[..., None], lam)
    if not z:
        return J.new_zeros(0, J.shape[-1], dtype=torch.float64)
    return -torch.cat(z)[..., 0]

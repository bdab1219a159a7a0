"""The coupled (global) Gauss-Newton step: preconditioned CG over all experts.

Block Jacobi (:mod:`ddpinn.training.gauss_newton`) drops the coupling of the experts through
their interfaces. For the symmetric conditions the residual of a side is antisymmetric and
linear in the two sides' values, R(mine, other) = -R(other, mine), with the same weights on
both sides and the points paired in order: the rows r_s of side s (expert e facing nb) and
r_s' of its partner side s' (nb facing e) satisfy r_s = -r_s', so
d r_s / d theta_nb = -J_nb[rows of s']. The Gauss-Newton matrix of the objective (its
least-squares form: the own rows, and r_s / sqrt(2) for every symmetric side) then acts as

    (H v)_e = J_e^T (J_e v_e + X_e),  X_e = -(J_nb v_nb)[rows of s'] on the rows of each
                                      symmetric side s of e, 0 elsewhere,

and v.H v = sum_e (J_e v_e).(J_e v_e + X_e). The block-Jacobi matrix is its block diagonal;
the gradient J_e^T r_e is the same. One-sided conditions that do not read ``other`` add no
coupling (X is 0 on their rows). :func:`check_global` refuses, at set-up, the conditions
that break these properties (checked numerically) and shared unknowns.

(H + lam I) d = -g is solved by CG from d = 0, preconditioned with the block-Jacobi
matrices (J_e^T J_e + lam I), whose Cholesky factors are computed once per damping. Every
vector is kept per expert on its own storage, every dot product is a per-expert float64
value summed with :func:`reproducible_sum`: each expert's bits, the iteration count and the
stopping are the same on any rank count. Each product H v exchanges the interface rows of
J v with the neighbours through the interface plan (:mod:`ddpinn.interface.exchange`).
"""
from __future__ import annotations

import math

import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import CONDITIONS, ConditionSet
from ddpinn.interface.quantities import QUANTITIES
from ddpinn.parallel.reduce import reproducible_sum
from ddpinn.training.gn_blocks import (_own, damped_factors, factor_solve, gram_blocks,
                                       matvec)
from ddpinn.training.lsq import _side_slot

COUPLINGS = ("block", "global")


# -- set-up checks -----------------------------------------------------------------------
def _random_sides(cond, gen, S=3, n=4, c=3):
    """Random ``(mine, other)`` dicts of the quantities ``cond`` needs, (S, n, c) each,
    with complementary ``downstream`` flags."""
    def one(down):
        d = {q: torch.randn(S, n, c, generator=gen, dtype=torch.float64) for q in cond.needs}
        return {**d, "downstream": down}
    down = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)[:S]
    return one(down), one(1.0 - down)


def condition_defect(name: str) -> str | None:
    """Why condition ``name`` cannot take part in the coupled step, or None.

    Symmetric: R(m, o) = -R(o, m) and R linear in (m, o). One-sided: R does not read
    ``other``. Checked on random values (float64, to 1e-12 relative)."""
    cond = CONDITIONS[name]
    gen = torch.Generator().manual_seed(7)
    m1, o1 = _random_sides(cond, gen)
    m2, o2 = _random_sides(cond, gen)
    r = cond.residual

    def close(a, b):
        scale = max(float(a.abs().max()), float(b.abs().max()), 1.0)
        return a.shape == b.shape and float((a - b).abs().max()) <= 1e-12 * scale

    if not cond.symmetric:
        o3 = {**o1, **{q: 2.0 * o1[q] + 1.0 for q in cond.needs}}
        if not close(r(m1, o1), r(m1, o3)):
            return "it is one-sided but reads the other side's values"
        return None
    if not close(r(m1, o1), -r(o1, m1)):
        return "its residual is not antisymmetric, R(mine, other) != -R(other, mine)"
    mix = {q: 0.3 * m1[q] - 1.7 * m2[q] for q in cond.needs}
    omix = {q: 0.3 * o1[q] - 1.7 * o2[q] for q in cond.needs}
    if not close(r({**m1, **mix}, {**o1, **omix}), 0.3 * r(m1, o1) - 1.7 * r(m2, o2)):
        return "its residual is not linear in the two sides' values"
    return None


def check_global(stage, conditions, cfg, where: str) -> None:
    """ValueError naming ``<where>.coupling`` when a ``coupling = "global"`` stage cannot
    take the coupled step: shared unknowns, or a condition :func:`condition_defect`
    refuses."""
    if getattr(stage, "coupling", "block") != "global":
        return
    if cfg.pde.inverse:
        raise ValueError(f"field '{where}.coupling' = 'global' does not run with shared "
                         f"unknowns ([pde.inverse]): use coupling = 'block'")
    for name in ConditionSet.of(conditions).names:
        if CONDITIONS[name].residual is None:
            continue  # refused by the optimizer's own check
        why = condition_defect(name)
        if why:
            raise ValueError(f"field '{where}.coupling' = 'global' cannot couple interface "
                             f"condition {name!r}: {why}; use coupling = 'block'")


# -- the coupled operator ------------------------------------------------------------------
class Coupling:
    """The interface coupling of the Gauss-Newton matrix on one rank.

    Parameters
    ----------
    plan : InterfacePlan, comm : the exchange communicator
    conditions : ConditionSet, the active conditions (in the row order of the blocks)
    widths : list of int, values per point of each condition's residual
    slots : int, interface slots per expert (the layout's)
    """

    def __init__(self, plan, comm, conditions, widths, slots):
        self.plan, self.comm, self.slots = plan, comm, int(slots)
        names = ConditionSet.of(conditions).names
        n = plan.n_points
        self.width = n * sum(widths)  # W: the columns of one side
        # columns of a side's block that belong to symmetric conditions (n-major per block)
        self.sym = torch.cat([torch.full((n * c,), float(CONDITIONS[nm].symmetric),
                                         dtype=torch.float64)
                              for nm, c in zip(names, widths)]) if names else \
            torch.zeros(0, dtype=torch.float64)
        self.slot = _side_slot(plan) if plan.n_sides else None

    @classmethod
    def of(cls, solver, layout):
        """The coupling of a :class:`~ddpinn.training.solver.Solver` with ``layout``."""
        pde, cond = solver.pde, ConditionSet.of(solver.conditions)
        m, q, d = pde.n_out, len(pde.equation_names()), solver.decomposition.box.dim
        widths = []
        for name in cond.names:
            needs = CONDITIONS[name].needs
            mine = {k: torch.zeros(1, 1, QUANTITIES[k].width(m, q, d), dtype=torch.float64)
                    for k in needs}
            mine["downstream"] = torch.ones(1, dtype=torch.float64)
            widths.append(int(CONDITIONS[name].residual(mine, mine).shape[-1]))
        return cls(solver.plan, solver.layout.peer_comm, cond, widths, layout.slots)

    def cross(self, Jv: list) -> list:
        """Collective (neighbour exchange). X_e (1, M) for the products J_e v_e (1, M):
        minus the partner side's rows of the neighbour's J v on the rows of each symmetric
        side, zero elsewhere; each on its own storage."""
        block = self.slots * self.width
        if not self.plan.n_sides or not block:  # no sides: no neighbour expects anything
            return [torch.zeros_like(y) for y in Jv]
        full = torch.cat(Jv)  # (E, M)
        E, M = full.shape
        n = self.plan.n_points
        sides = full[:, M - block:].reshape(E, self.slots, self.width)[self.plan.expert,
                                                                        self.slot]
        mine = {"jv": sides.reshape(self.plan.n_sides, n, self.width // n)}
        handle = exchange.post(self.plan, self.comm, mine)
        other = exchange.complete(self.plan, self.comm, mine, handle)["jv"]
        x_sides = -other.reshape(self.plan.n_sides, self.width) * self.sym.to(other)
        out = full.new_zeros(E, self.slots, self.width)
        out = out.index_put((self.plan.expert, self.slot), x_sides)
        X = torch.cat([full.new_zeros(E, M - block), out.reshape(E, block)], 1)
        return [X[e:e + 1].clone() for e in range(E)]


def _jv(Js: list, v: list) -> list:
    """J_e v_e of every expert: (1, M) each, from owned J_e (1, M, P) and v_e (1, P)."""
    return [matvec(J, x) for J, x in zip(Js, v)]


def curvature_terms(coupling, Js: list, v: list, Jv: list = None) -> list:
    """Collective. (J_e v_e).(J_e v_e + X_e) per expert, float64 scalars (``Jv``: the
    products J_e v_e when the caller has them)."""
    Jv = _jv(Js, v) if Jv is None else Jv
    X = coupling.cross(Jv)
    return [float((y * (y + x)).sum()) for y, x in zip(Jv, X)]


def apply_h(coupling, Js: list, v: list, lam: float) -> list:
    """Collective. ((H + lam I) v)_e = J_e^T (J_e v_e + X_e) + lam v_e: a list of (1, P)."""
    Jv = _jv(Js, v)
    X = coupling.cross(Jv)
    return [matvec(J, y + x, transpose=True) + lam * z for J, y, x, z in zip(Js, Jv, X, v)]


def _dots(comm, n_total, pairs) -> list:
    """Collective. The global dot products sum_e a_e.b_e of each pair of per-expert lists,
    summed exactly (:func:`reproducible_sum`)."""
    n_local = len(pairs[0][0])
    per = torch.zeros(n_local, len(pairs), dtype=torch.float64)
    for k, (a, b) in enumerate(pairs):
        for e in range(n_local):
            per[e, k] = (a[e] * b[e]).sum()
    return [float(t) for t in reproducible_sum(comm, per.numpy(), n_total)]


def pcg(coupling, Js: list, precond, b: list, lam: float, comm, n_total: int,
        iterations: int, tolerance: float):
    """Collective. Solve (H + lam I) x = b by CG from x = 0, preconditioned by ``precond``
    (a per-expert list -> list map, the block-Jacobi inverse).

    ``b`` and the result: lists of (1, P), one per local expert. Stops when
    |r| <= tolerance |b| or after ``iterations`` products; every rank takes the same
    branches (the dot products are exact global sums). Returns ``(x, iterations,
    relative residual)``."""
    x = [torch.zeros_like(t) for t in b]
    res = [t.clone() for t in b]
    z = precond(res)
    rz, bb = _dots(comm, n_total, [(res, z), (b, b)])
    p = [t.clone() for t in z]
    rel, k = (0.0 if bb == 0 else 1.0), 0
    while k < iterations and rel > tolerance and math.isfinite(rz):
        q = apply_h(coupling, Js, p, lam)
        (pq,) = _dots(comm, n_total, [(p, q)])
        if not pq > 0:  # breakdown (NaN factor, or rounding at convergence)
            break
        alpha = rz / pq
        x = [xi + alpha * pi for xi, pi in zip(x, p)]
        res = [ri - alpha * qi for ri, qi in zip(res, q)]
        z = precond(res)
        rz_new, rr = _dots(comm, n_total, [(res, z), (res, res)])
        k += 1
        rel = math.sqrt(max(rr, 0.0) / bb) if bb > 0 else 0.0
        beta = rz_new / rz if rz != 0 else 0.0
        rz = rz_new
        p = [zi + beta * pi for zi, pi in zip(z, p)]
    if not (math.isfinite(rz) and math.isfinite(rel)):  # a failed factor somewhere
        x = [torch.full_like(t, math.nan) for t in b]
    return x, k, rel


# -- the hooks of LMCore -----------------------------------------------------------------
def _owned(core, J) -> list:
    """Every expert's J_e (1, M, P) on its own float64 storage, once per Jacobian."""
    if getattr(core, "_owned_of", None) is not J:
        core._owned_of, core._owned = J, [_own(J, e) for e in range(J.shape[0])]
    return core._owned


class Preconditioner:
    """The block-Jacobi preconditioner of the coupled step, (J_e^T J_e + lam I)^-1 per
    expert, whose Gram matrices are rebuilt every ``every`` steps and reused in between.

    A Gram matrix costs O(M P^2) per expert, a CG iteration O(M P): with P in the
    thousands the Gram matrices are most of a step, and the preconditioner needs only to be
    close to the current one. Reused matrices (with the Jacobians they came from, which the
    sample-space form needs) keep it exactly the inverse of a damped block matrix, so CG
    still solves the current system; only its iteration count changes. The Cholesky
    factors follow the damping: a new lambda refactors the kept matrices. ``every = 1`` is
    the preconditioner of the current Jacobian at every step.

    A stage's step count modulo ``every`` says when to rebuild (the count is in the
    checkpoint); nothing kept (a new stage, new points, a restart) rebuilds at once.
    """

    def __init__(self, every: int = 1):
        self.every, self.steps = int(every), 0
        self._kept = None  # {"Js", "gram", "space", "lam", "factors"} of the last rebuild
        self.rebuilt = False  # whether the current step rebuilt it

    def drop(self) -> None:
        """Forget the kept matrices (the objective changed)."""
        self._kept = None

    def begin_step(self, Js: list, shape: tuple) -> None:
        """Once per Gauss-Newton step, with its per-expert Jacobians (1, M, P) and the
        shape (E, M, P) of the rank's Jacobian."""
        self.rebuilt = self._kept is None or self.steps % self.every == 0
        if self.rebuilt:
            gram, space = gram_blocks(Js, *shape[1:])
            self._kept = {"Js": Js if space == "sample" else None, "gram": gram,
                          "space": space, "lam": None, "factors": None}
        self.steps += 1

    def apply_for(self, lam: float):
        """The preconditioner for damping ``lam``: a per-expert list -> list map."""
        k = self._kept
        if k["lam"] != lam:
            k["factors"], k["lam"] = damped_factors(k["gram"], lam), lam
        return block_jacobi(k["Js"], k["factors"], k["space"], lam)


def block_jacobi(Js: list, factors: list, space: str, lam: float):
    """The preconditioner: z -> (J_e^T J_e + lam I)^-1 z_e per expert, through the factors
    of the parameter-space or sample-space Gram matrices (in sample space through
    (J^T J + lam I)^-1 z = (z - J^T (J J^T + lam I)^-1 J z) / lam)."""

    def apply(z: list) -> list:
        if space == "parameter":
            return [factor_solve(L, t[..., None])[..., 0] for L, t in zip(factors, z)]
        return [(t - matvec(Je, factor_solve(L, matvec(Je, t)[..., None])[..., 0],
                            transpose=True)) / lam for L, Je, t in zip(factors, Js, z)]
    return apply


def global_solve(core, J, r):
    """Collective. The coupled damped Gauss-Newton step ``(d (E, P), ds (0,))`` of
    :class:`~ddpinn.training.gauss_newton.LMCore` (no shared unknowns): PCG on
    (H + lam I) d = -J^T r, preconditioned by ``core.preconditioner``; its iterations and
    final relative residual in ``core.cg_last``."""

    Js = _owned(core, J)
    precond = core.preconditioner.apply_for(core.lam)
    b = [-matvec(Je, _own(r, e), transpose=True) for e, Je in enumerate(Js)]
    iterations, tolerance = core.cg_settings
    x, k, rel = pcg(core.coupling, Js, precond, b, core.lam, core.comm, core.n_total,
                    iterations, tolerance)
    core.cg_last = {"gn_cg_iterations": k, "gn_cg_residual": rel}
    d = torch.cat(x) if x else J.new_zeros(0, J.shape[-1], dtype=torch.float64)
    return d, J.new_zeros(0, dtype=torch.float64)  # on the parameters' device


def global_model(core, J, r, d) -> tuple:
    """Collective. ``(slope, curvature)`` of the coupled model along d (E, P): slope =
    sum_e 2 r_e.J_e d_e, curvature = d.H d = sum_e (J_e d_e).(J_e d_e + X_e)."""

    Js = _owned(core, J)
    v = [_own(d, e) for e in range(len(Js))]
    Jv = _jv(Js, v)
    curv = curvature_terms(core.coupling, Js, v, Jv)
    per = torch.zeros(len(Js), 2, dtype=torch.float64)
    for e, y in enumerate(Jv):
        per[e, 0] = 2 * (_own(r, e) * y).sum()
        per[e, 1] = curv[e]
    tot = reproducible_sum(core.comm, per.numpy(), core.n_total)
    return float(tot[0]), float(tot[1])

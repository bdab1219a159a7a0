"""Values of the quantities of interest: forces, probes and probe differences.

Forces: the force of the fluid on a boundary piece ``tag`` (a Navier-Stokes-type PDE with
outputs u, v[, w], p and viscosity ``nu``) is ``F = - sum_q w_q sigma(x_q) n_q`` with the
stress ``sigma = -p I + nu (grad u + grad u^T)`` and ``n`` the outward normal of the fluid
domain (pointing into the body): a quadrature of ``- integral sigma n ds``. The points are
a fixed rule on the shape's boundary pieces (:func:`boundary_rule`; a box face of a box
domain), the same on every rank and every rank count.

Everything takes a ``predict`` callable: points (P, D) -> (P, m + m D) values on rank 0 (the
outputs, then per output its derivatives along every axis, as
:meth:`ddpinn.eval_experts.RankExperts.value_names`), None on other ranks. A trained run
gives it with :func:`solver_predict` or :func:`experts_predict` (collective); tests give a
closed-form field.
"""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from ddpinn.quantities_of_interest.spec import (COMPONENTS, FORCE_SEED, PRESSURE,
                                                Quantities, is_series)


def box_face_rule(box, dim: int, tag: str, n: int, rng) -> tuple:
    """Quadrature on the face ``tag`` (``x_lower``, ``y_upper``, ...) of a box's space part.

    Returns points (n, dim), outward normals (n, dim) and weights (n,) summing to the face's
    measure: :func:`unit_points` over the face, equal weights (``rng`` is not used).
    """
    axis_name, side = tag.rsplit("_", 1)
    a = list(box.names[:dim]).index(axis_name)
    lo, hi = np.asarray(box.lower[:dim], float), np.asarray(box.upper[:dim], float)
    pts = np.empty((n, dim))
    along = [k for k in range(dim) if k != a]
    if along:
        pts[:, along] = lo[along] + unit_points(n, len(along)) * (hi - lo)[along]
    pts[:, a] = hi[a] if side == "upper" else lo[a]
    normals = np.zeros((n, dim))
    normals[:, a] = 1.0 if side == "upper" else -1.0
    measure = float(np.prod(np.delete(hi - lo, a))) if dim > 1 else 1.0
    return pts, normals, np.full(n, measure / n)


def unit_points(n: int, d: int) -> np.ndarray:
    """A fixed, equidistributed set of n points in the unit cube [0, 1)^d: midpoints for
    d = 1 (the periodic trapezoid rule on a closed curve: spectral accuracy for smooth
    integrands), a Halton set shifted by half a step for d > 1. Shape (n, d)."""
    k = np.arange(n)
    if d == 1:
        return ((k + 0.5) / n)[:, None]
    cols = []
    for base in (2, 3, 5, 7)[:d]:
        x, f, i = np.zeros(n), 1.0 / base, k + 1
        while np.any(i > 0):
            x += f * (i % base)
            i //= base
            f /= base
        cols.append(x)
    return np.stack(cols, axis=1)


def boundary_rule(shape, tag: str, n: int, rng) -> tuple:
    """A fixed quadrature rule on the boundary piece ``tag`` of a shape: about ``n`` points.

    Each of the shape's boundary pieces with that tag (``shape.pieces()``, parametrised by
    measure over the unit cube) gets points in proportion to its measure, at
    :func:`unit_points` mapped by ``from_unit``; points the shape does not keep (a piece cut
    by a composite) are dropped, every other one weighs ``measure / points`` of its piece.
    Shapes without pieces fall back on their Monte Carlo ``shape.quadrature(tag, n, rng)``.

    Returns points (q, dim), unit outward normals (q, dim) and weights (q,).
    """
    pieces = [p for p in getattr(shape, "pieces", lambda: [])()
              if p.tag == tag and p.measure > 0 and p.param_dim > 0]
    if not pieces:
        return shape.quadrature(tag, n, rng)
    total = sum(p.measure for p in pieces)
    pts, normals, weights = [], [], []
    for p in pieces:
        m = max(1, int(round(n * p.measure / total)))
        x, nv = p.from_unit(unit_points(m, p.param_dim))
        keep = np.asarray(p.accept(x, nv), dtype=bool)
        pts.append(x[keep])
        normals.append(nv[keep])
        weights.append(np.full(int(keep.sum()), p.measure / m))
    return np.concatenate(pts), np.concatenate(normals), np.concatenate(weights)


def traction_force(values: np.ndarray, normals: np.ndarray, weights: np.ndarray,
                   n_outputs: int, n_axes: int, p_index: int, nu: float) -> np.ndarray:
    """Force of the fluid on the body: ``- sum_q w_q sigma_q n_q``.

    Parameters
    ----------
    values : ndarray (n, m + m * n_axes), outputs then derivatives per output per axis; the
        first ``dim`` outputs are the velocity components
    normals : ndarray (n, dim), unit outward normals of the fluid domain
    weights : ndarray (n,)
    n_outputs, n_axes : m and the number of axes of the derivatives (space, then t)
    p_index : column of the pressure
    nu : float, kinematic viscosity

    Returns
    -------
    ndarray (dim,)
    """
    dim = normals.shape[1]
    m = n_outputs
    grad = np.stack([values[:, m + i * n_axes: m + i * n_axes + dim] for i in range(dim)],
                    axis=1)  # (n, dim, dim): grad[:, i, j] = d u_i / d x_j
    sigma = -values[:, p_index, None, None] * np.eye(dim) + \
        nu * (grad + np.swapaxes(grad, 1, 2))
    traction = np.einsum("nij,nj->ni", sigma, normals)
    return -(weights[:, None] * traction).sum(axis=0)


@dataclass
class ProbeSeries:
    """Time series of the probes that give space coordinates only.

    names : list of str, the probes (n of them)
    space : ndarray (n, dim), their space coordinates
    times : ndarray (T,), the time samples
    values : ndarray (n, T, m), every output of the PDE at every probe and time
    """

    names: list
    space: np.ndarray
    times: np.ndarray
    values: np.ndarray


class QuantityEvaluator:
    """The points of every quantity (built once, the same on every rank) and their values.

    Parameters
    ----------
    quantities : Quantities
    problem : Problem (``pde``, ``box``, ``time_axis``; ``shape`` where the domain is one)
    times : ndarray (T,), optional
        Time samples of the probes that give space coordinates only (time series), e.g. the
        test grid's; default: the end of the time interval alone. Their value as a quantity
        is the one at the last of these times.
    """

    def __init__(self, quantities: Quantities, problem, times=None):
        self.q, self.pde, self.box = quantities, problem.pde, problem.box
        self.time_axis = problem.time_axis
        self.series_names = [n for n, p in quantities.probes.items()
                             if is_series(p, self.box.dim, self.time_axis)]
        if times is None and self.time_axis is not None:
            times = [self.box.upper[self.time_axis]]
        self.times = np.asarray(times if self.series_names else [], dtype=np.float64)
        if self.series_names and (self.times.ndim != 1 or not len(self.times)):
            raise ValueError(f"probe {self.series_names[0]!r} is a time series but the times "
                             f"have shape {self.times.shape}; give at least one time sample")
        self.dim = self.box.dim - (self.time_axis is not None)
        shape = getattr(problem, "shape", None)
        blocks, self.rules = [], []
        for i, f in enumerate(quantities.forces):
            rng = np.random.default_rng(FORCE_SEED + i)
            if shape is not None:
                pts, normals, weights = boundary_rule(shape, f.tag, f.points, rng)
            else:
                pts, normals, weights = box_face_rule(self.box, self.dim, f.tag, f.points, rng)
            pts = np.asarray(pts, np.float64)
            if self.time_axis is not None:
                t = self.box.upper[self.time_axis] if f.t is None else f.t
                pts = np.hstack([pts, np.full((len(pts), 1), float(t))])
            self.rules.append((np.asarray(normals, np.float64)[:, :self.dim],
                               np.asarray(weights, np.float64)))
            blocks.append(pts)
        self.n_force_points = sum(len(b) for b in blocks)
        blocks += [self._probe_points(n, self.times[-1:]) for n in quantities.probes]
        self.points = np.concatenate(blocks) if blocks else np.zeros((0, self.box.dim))

    def _probe_points(self, name: str, times) -> np.ndarray:
        """Probe ``name`` as points (1, D), or (T, D) at ``times`` for a time series."""
        point = np.asarray(self.q.probes[name], np.float64)
        if name not in self.series_names:
            return point[None]
        times = np.asarray(times, np.float64)
        return np.insert(np.repeat(point[None], len(times), axis=0), self.time_axis, times,
                         axis=1)

    def values(self, predict, comm=None) -> dict:
        """Collective when ``comm`` is given: {name: float}, the same on every rank.

        predict : callable, points (P, D) -> (P, m + m D) on rank 0 (None elsewhere)
        """
        vals = predict(self.points)
        out = self.from_values(vals) if vals is not None else None
        return comm.bcast(out) if comm is not None else out

    def from_values(self, vals: np.ndarray) -> dict:
        """{name: float} from the values at :attr:`points`."""
        pde, m = self.pde, self.pde.n_out
        n_axes = self.box.dim
        out, start = {}, 0
        for f, (normals, weights) in zip(self.q.forces, self.rules):
            block = vals[start:start + len(weights)]
            start += len(weights)
            force = f.scale * traction_force(block, normals, weights, m, n_axes,
                                             pde.outputs.index(PRESSURE),
                                             float(pde.params["nu"]))
            out.update({f"{f.name}_{c}": float(v) for c, v in zip(COMPONENTS, force)})
        probe = {}
        for k, name in enumerate(self.q.probes):
            row = vals[self.n_force_points + k]
            for j, o in enumerate(pde.outputs):
                probe[(name, o)] = out[f"{name}_{o}"] = float(row[j])
        for name, (o, a, b) in self.q.differences.items():
            out[name] = probe[(a, o)] - probe[(b, o)]
        return out


    def series(self, predict) -> ProbeSeries | None:
        """Collective where ``predict`` is: the time series of the probes that have one, on
        rank 0 (None elsewhere, and on every rank when no probe is a time series).

        predict : callable, points (P, D) -> (P, m[ + m D]) on rank 0 (None elsewhere)
        """
        if not self.series_names:
            return None  # the same on every rank: nobody calls predict
        pts = np.concatenate([self._probe_points(n, self.times) for n in self.series_names])
        vals = predict(pts)
        if vals is None:
            return None
        m, n, T = self.pde.n_out, len(self.series_names), len(self.times)
        space = np.stack([np.asarray(self.q.probes[k], np.float64) for k in self.series_names])
        return ProbeSeries(list(self.series_names), space, self.times.copy(),
                           np.asarray(vals)[:, :m].reshape(n, T, m))


def solver_predict(solver):
    """Collective ``predict`` of a training :class:`~ddpinn.training.solver.Solver`."""
    from ddpinn.eval_experts import with_derivatives

    n_values = solver.pde.n_out * (1 + solver.problem.box.dim)
    return lambda points: solver.predict(points, values=with_derivatives, n_values=n_values)


def experts_predict(experts):
    """Collective ``predict`` of :class:`~ddpinn.eval_experts.RankExperts`."""
    return lambda points: experts.predict(points, derivatives=True)

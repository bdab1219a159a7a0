"""Errors against the exact solution or reference data on a test grid."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddpinn.geometry import grid_points

DEFAULT_POINTS = {1: 201, 2: 101, 3: 33, 4: 17}


@dataclass
class TestGrid:
    """Evaluation grid and what the solution should be there.

    axes : list of ndarray (one per axis); points : (P, d), the grid's points;
    truth : (P, n_out), or (Q, n_out) at ``scattered`` points, or None;
    source : "exact", a reference file, or "none";
    scattered : (Q, d) or None, reference points off the grid: errors are measured there,
        the solution is written on the grid
    inside : (P,) bool or None, the grid's points in a non-box domain (None: a box, all of
        them): the experts are evaluated there only, errors are measured there only
    """

    axes: list
    points: np.ndarray
    truth: np.ndarray | None
    source: str
    scattered: np.ndarray | None = None
    inside: np.ndarray | None = None

    @property
    def shape(self) -> tuple:
        return tuple(len(a) for a in self.axes)

    @property
    def grid_truth(self) -> np.ndarray | None:
        """The truth at the grid's points (None for a scattered reference)."""
        return None if self.scattered is not None else self.truth


def make_test_grid(problem, shape=None, cache=None, comm=None) -> TestGrid:
    """:func:`_make_test_grid`, with the points inside the domain marked when it is not a
    box (``problem.shape``)."""
    grid = _make_test_grid(problem, shape, cache, comm)
    domain = getattr(problem, "shape", None)
    if domain is not None:
        space = [a for a in range(problem.box.dim) if a != problem.time_axis]
        grid.inside = np.asarray(domain.inside(grid.points[:, space]), dtype=bool)
    return grid


def _make_test_grid(problem, shape=None, cache=None, comm=None) -> TestGrid:
    """The reference's own grid where the PDE uses reference data, else a uniform grid
    (``shape`` or a default by dimension) with the exact solution or the PDE's computed
    reference where there is one.

    Collective when ``comm`` is given and the PDE computes its reference: rank 0 computes
    it (into the file ``cache``) first, then the other ranks read it from there.
    """
    pde, box = problem.pde, problem.box
    shape = shape or [DEFAULT_POINTS[box.dim]] * box.dim
    from_file = problem.data_for("reference") if hasattr(problem, "data_for") else []
    if from_file or pde.has_reference:
        ref = (data_reference(from_file[0], pde, box) if from_file
               else _load_reference(pde, box, comm))
        if ref is not None and ref.scattered:
            axes, pts = grid_points(box, shape)
            return TestGrid(axes, pts, ref.values, ref.source, ref.points)
        if ref is not None:
            mesh = np.meshgrid(*ref.axes, indexing="ij")
            pts = np.stack([m.ravel() for m in mesh], axis=-1)
            return TestGrid(ref.axes, pts, ref.values.reshape(len(pts), -1), ref.source)
    axes, pts = grid_points(box, shape)
    truth = None
    if pde.has_exact:
        truth = pde.exact(torch.as_tensor(pts), pde.params).numpy()
        return TestGrid(axes, pts, truth, "exact")
    if pde.has_computed_reference:
        values, source = _computed_reference(problem, axes, cache, comm)
        return TestGrid(axes, pts, values.reshape(len(pts), -1), source)
    return TestGrid(axes, pts, None, "none")


def data_reference(data, pde, box):
    """The reference of a ``[[data]]`` table with use = "reference": its points (or grid
    lines) inside the domain ``box``, so a file that reaches beyond it (a whole DNS around a
    subvolume) is scored where the two overlap. Each rank reads that part; errors are
    measured on rank 0. Outputs the file lacks are NaN and get no error."""
    from ddpinn.io.reference import Reference

    block = data.source.read_inside(box.lower, box.upper)
    values = np.asarray(block.values, dtype=np.float64)
    full = np.full(values.shape[:-1] + (pde.n_out,), np.nan)
    for k, name in enumerate(data.outputs):
        full[..., pde.outputs.index(name)] = values[..., k]
    source = str(data.source.path)
    if block.kind == "grid":
        return Reference([np.asarray(a, float) for a in block.grid], full, source)
    return Reference(None, full, source, np.asarray(block.points, float))


def _load_reference(pde, box, comm):
    """:meth:`PDE.load_reference`, checked; errors agreed on every rank (collective when
    ``comm`` is given) and raised as DDPINNError (one message, exit 2 in ``ddpinn run``)."""
    from ddpinn.parallel.errors import DDPINNError, agree

    ref, error = None, None
    try:
        ref = pde.load_reference()
        if ref is not None:
            check_reference(ref, pde, box)
    except Exception as exc:  # a plugin's hook may raise anything: one message, not a crash
        error = exc if isinstance(exc, (ValueError, OSError)) else \
            ValueError(f"PDE {pde.name!r}: load_reference() failed: "
                       f"{type(exc).__name__}: {exc}")
    if comm is not None:
        agree(comm, error)
    elif error is not None:
        raise DDPINNError(str(error)) from None
    return ref


def check_reference(ref, pde, box) -> None:
    """Raise ValueError when a :class:`~ddpinn.io.reference.Reference` does not fit the
    problem (number of outputs and axes, points inside the domain)."""
    from ddpinn.io.reference import Reference

    who = f"the reference of PDE {pde.name!r} ({getattr(ref, 'source', ref)!s})"
    if not isinstance(ref, Reference):
        raise ValueError(f"PDE {pde.name!r}: load_reference() must return a "
                         f"ddpinn.io.reference.Reference or None, got {type(ref).__name__}")
    values = np.asarray(ref.values)
    if values.shape[-1] != pde.n_out:
        raise ValueError(f"{who} has {values.shape[-1]} values per point; the PDE has "
                         f"{pde.n_out} outputs ({', '.join(pde.outputs)})")
    if ref.scattered:
        pts = np.asarray(ref.points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != box.dim or values.shape != (len(pts), pde.n_out):
            raise ValueError(f"{who}: points must be (P, {box.dim}) and values "
                             f"(P, {pde.n_out}), got {pts.shape} and {values.shape}")
        lo, hi = np.asarray(box.lower), np.asarray(box.upper)
        tol = 1e-9 * np.maximum(1.0, np.abs(hi - lo))
        outside = np.flatnonzero(((pts < lo - tol) | (pts > hi + tol)).any(axis=1))
        if len(outside):
            raise ValueError(f"{who}: {len(outside)} of {len(pts)} points lie outside the "
                             f"domain {list(box.lower)} to {list(box.upper)}, e.g. "
                             f"{pts[outside[0]].tolist()}")
    elif ref.axes is None or len(ref.axes) != box.dim or \
            values.shape[:-1] != tuple(len(a) for a in ref.axes):
        raise ValueError(f"{who}: a grid reference needs {box.dim} axes and values of shape "
                         f"(n_0, ..., n_{box.dim - 1}, {pde.n_out})")


def _computed_reference(problem, axes, cache, comm):
    from ddpinn.parallel.errors import agree

    pde, resolution = problem.pde, problem.cfg.output.reference_n
    out = None
    for turn in ((0,), tuple(range(1, comm.size))) if comm is not None else ((0,),):
        error = None
        if comm is None or comm.rank in turn:
            try:
                out = pde.computed_reference(axes, pde.params, cache, resolution)
            except (ValueError, OSError) as exc:
                error = exc
        if comm is not None:
            agree(comm, error)  # rank 0 has written the cache before the others look
        elif error is not None:
            raise error
    return out


def relative_errors(pde, pred: np.ndarray, truth: np.ndarray, times=None) -> dict:
    """Relative L2 error per output and per error group: {"l2_u": ..., ...}.

    Gauge outputs (pressure known up to a constant) are compared after removing means: the
    mean at each time when ``times`` (P,) is given, since in a time-dependent problem the
    constant may change with time (p + c(t) solves incompressible Navier-Stokes as well).
    """
    pred, truth = pred.copy(), truth.copy()
    group = np.unique(times, return_inverse=True)[1].ravel() if times is not None \
        else np.zeros(len(pred), dtype=np.int64)
    counts = np.bincount(group)
    for name in pde.gauge_outputs:
        k = pde.outputs.index(name)
        for arr in (pred, truth):
            arr[:, k] -= (np.bincount(group, weights=arr[:, k]) / counts)[group]
    out = {}
    # An output without reference values (NaN: a reference file lacking it) gets no error.
    known = [not np.isnan(truth[:, k]).all() for k in range(len(pde.outputs))]
    for k, name in enumerate(pde.outputs):
        if not known[k]:
            continue
        out[f"l2_{name}"] = float(np.linalg.norm(pred[:, k] - truth[:, k])
                                  / max(np.linalg.norm(truth[:, k]), 1e-300))
    for group, names in pde.error_groups.items():
        ks = [pde.outputs.index(n) for n in names]
        if not all(known[k] for k in ks):
            continue
        out[f"l2_{group}"] = float(np.linalg.norm(pred[:, ks] - truth[:, ks])
                                   / max(np.linalg.norm(truth[:, ks]), 1e-300))
    return out


@dataclass
class Evaluation:
    """What rank 0 gets from :func:`evaluate_all`.

    pred : (P, n_out), the prediction at the grid's points (NaN outside a non-box domain)
    errors : dict, relative L2 errors (as :func:`relative_errors`; empty without a truth)
    at_reference : (Q, n_out) at ``grid.scattered``, or None without scattered points
    """

    pred: np.ndarray
    errors: dict
    at_reference: np.ndarray | None = None


def evaluate(solver, grid: TestGrid):
    """Collective. Prediction on the grid and its errors.

    Returns (pred (P, n_out), errors dict) on rank 0 and (None, {}) elsewhere. In a non-box
    domain (``grid.inside``) the prediction is NaN outside and the errors are those inside.
    """
    out = evaluate_all(solver, grid)
    return (None, {}) if out is None else (out.pred, out.errors)


def evaluate_all(solver, grid: TestGrid) -> Evaluation | None:
    """Collective. :func:`evaluate`, and the prediction at the scattered reference points:
    an :class:`Evaluation` on rank 0, None elsewhere."""
    on_grid = grid.points if grid.inside is None else grid.points[grid.inside]
    points = on_grid if grid.scattered is None else np.concatenate([on_grid, grid.scattered])
    pred = solver.predict(points)
    if pred is None:
        return None
    pred, at_ref = pred[:len(on_grid)], pred[len(on_grid):]
    if grid.scattered is not None:  # errors at the reference's points, solution on the grid
        # Scattered times rarely repeat: gauge outputs lose one mean over all points.
        errors = relative_errors(solver.pde, at_ref, grid.truth) if len(at_ref) else {}
    else:
        at_ref, errors = None, _grid_errors(solver, grid, pred)
    if grid.inside is not None:
        full = np.full((len(grid.points), pred.shape[1]), np.nan)
        full[grid.inside] = pred
        pred = full
    return Evaluation(pred, errors, at_ref)


def _grid_errors(solver, grid: TestGrid, pred: np.ndarray) -> dict:
    """Errors of ``pred`` at the grid's points (those inside a non-box domain)."""
    if grid.truth is None or not len(pred):
        return {}
    points, truth = grid.points, grid.truth
    if grid.inside is not None:
        points, truth = points[grid.inside], truth[grid.inside]
    t_axis = solver.problem.time_axis
    times = points[:, t_axis] if t_axis is not None else None
    return relative_errors(solver.pde, pred, truth, times)

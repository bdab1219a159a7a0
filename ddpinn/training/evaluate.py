"""Errors against the exact solution or reference data on a test grid."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddpinn.geometry import grid_points
from ddpinn.io import reference as reference_data

DEFAULT_POINTS = {1: 201, 2: 101, 3: 33, 4: 17}


@dataclass
class TestGrid:
    """Evaluation grid and what the solution should be there.

    axes : list of ndarray (one per axis); points : (P, d);
    truth : (P, n_out) or None; source : "exact", a reference file, or "none"
    """

    axes: list
    points: np.ndarray
    truth: np.ndarray | None
    source: str

    @property
    def shape(self) -> tuple:
        return tuple(len(a) for a in self.axes)


def make_test_grid(problem, shape=None, cache=None, comm=None) -> TestGrid:
    """The reference's own grid where the PDE uses reference data, else a uniform grid
    (``shape`` or a default by dimension) with the exact solution or the PDE's computed
    reference where there is one.

    Collective when ``comm`` is given and the PDE computes its reference: rank 0 computes
    it (into the file ``cache``) first, then the other ranks read it from there.
    """
    pde, box = problem.pde, problem.box
    if pde.reference:
        ref = reference_data.load(pde.reference)
        if ref is not None:
            mesh = np.meshgrid(*ref.axes, indexing="ij")
            pts = np.stack([m.ravel() for m in mesh], axis=-1)
            return TestGrid(ref.axes, pts, ref.values.reshape(len(pts), -1), ref.source)
    shape = shape or [DEFAULT_POINTS[box.dim]] * box.dim
    axes, pts = grid_points(box, shape)
    truth = None
    if pde.has_exact:
        truth = pde.exact(torch.as_tensor(pts), pde.params).numpy()
        return TestGrid(axes, pts, truth, "exact")
    if pde.has_computed_reference:
        values, source = _computed_reference(problem, axes, cache, comm)
        return TestGrid(axes, pts, values.reshape(len(pts), -1), source)
    return TestGrid(axes, pts, None, "none")


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
    for k, name in enumerate(pde.outputs):
        out[f"l2_{name}"] = float(np.linalg.norm(pred[:, k] - truth[:, k])
                                  / max(np.linalg.norm(truth[:, k]), 1e-300))
    for group, names in pde.error_groups.items():
        ks = [pde.outputs.index(n) for n in names]
        out[f"l2_{group}"] = float(np.linalg.norm(pred[:, ks] - truth[:, ks])
                                   / max(np.linalg.norm(truth[:, ks]), 1e-300))
    return out


def evaluate(solver, grid: TestGrid):
    """Collective. Prediction on the grid and its errors.

    Returns (pred (P, n_out), errors dict) on rank 0 and (None, {}) elsewhere.
    """
    pred = solver.predict(grid.points)
    if pred is None:
        return None, {}
    t_axis = solver.problem.time_axis
    times = grid.points[:, t_axis] if t_axis is not None else None
    errors = relative_errors(solver.pde, pred, grid.truth, times) \
        if grid.truth is not None else {}
    return pred, errors

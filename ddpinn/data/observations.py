"""Observations read from files (``[[data]]`` with use = "observations") as rows of the loss.

Each rank reads, for each of its experts, only the part of a file inside that expert's cell
(:meth:`DataSource.read_box`), then keeps the points that :func:`ddpinn.decomposition.locate`
gives to that expert, so every point reaches exactly one expert on any rank count. A table
may use a fraction of its points or grid nodes (``fraction``): each expert keeps a sid-keyed
random choice of its own, the same on any rank count.

The rows are appended after the rows of the point batch (:func:`append_observations`), with
the weight 1 / (observations of the expert) per point, divided by noise^2 where the table
gives a noise level: each expert's data term is then a mean of squared misfits in units of the
noise.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ddpinn.decomposition.locate import locate

@dataclass
class Observations:
    """The observations of a rank's experts.

    counts : (S,) int64, observations of every subdomain (all ranks agree)
    points : dict sid -> (k, d) float64, for the local experts
    target : dict sid -> (k, m) float64, the observed values (0 where not observed)
    weight : dict sid -> (k, m) float64, the loss weight of each value (0 where not observed)
    """

    counts: np.ndarray
    points: dict
    target: dict
    weight: dict

    @property
    def rows(self) -> int:
        """Rows every expert's batch gets for observations: the largest count."""
        return int(self.counts.max()) if len(self.counts) else 0


def _choose(spec, sid: int, n: int, seed: int) -> np.ndarray:
    """Indices of the points an expert keeps of its ``n`` (all, or a fraction), sorted."""
    fraction = float(getattr(spec, "fraction", 1.0))
    if fraction >= 1.0:
        return np.arange(n)
    k = int(round(fraction * n))
    from ddpinn.training.points import TAG_OBSERVATIONS, rng_for

    pick = rng_for(seed, TAG_OBSERVATIONS, sid).permutation(n)[:k]
    return np.sort(pick)


def _expert_part(data, problem, sid: int, seed: int):
    """Points (k, d) and values (k, m_file) of one table that belong to subdomain ``sid``."""
    decomp = problem.decomposition
    lower, upper = decomp.lower[sid], decomp.upper[sid]
    block = data.source.read_box(lower, upper)
    if block.kind == "grid":
        mesh = np.meshgrid(*block.grid, indexing="ij")
        pts = np.stack([m.ravel() for m in mesh], axis=-1)
        vals = np.asarray(block.values).reshape(len(pts), -1)
    else:
        pts, vals = np.asarray(block.points, float), np.asarray(block.values, float)
    inside = np.all((pts >= lower) & (pts <= upper), axis=1)
    pts, vals = pts[inside], vals[inside]
    mine = locate(pts, decomp) == sid if len(pts) else np.zeros(0, bool)
    pts, vals = pts[mine], vals[mine]
    keep = _choose(data.spec, sid, len(pts), seed)
    pts, vals = pts[keep], vals[keep]
    if problem.shape is not None and len(pts):
        space = [a for a in range(pts.shape[1]) if a != problem.time_axis]
        out = ~np.asarray(problem.shape.inside(pts[:, space]), dtype=bool)
        if out.any():
            raise ValueError(f"field 'data' ({data.name}): the point {pts[out][0].tolist()} "
                             f"of {data.source.path} lies outside the domain")
    return pts, vals


def read_observations(problem, sids, comm, seed: int) -> Observations | None:
    """Collective. The observations of the experts ``sids`` of this rank, and the counts of
    every subdomain (one allreduce). None when the case has no observation files.

    A file problem found by one rank (NaN in its part, a point outside a shaped domain)
    stops every rank with the same message (:func:`ddpinn.parallel.errors.agree`).
    """
    from ddpinn.parallel.errors import agree

    tables = problem.data_for("observations")
    if not tables:
        return None
    pde = problem.pde
    m = pde.n_out
    counts = np.zeros(problem.decomposition.n_subdomains, dtype=np.int64)
    points, target, weight = {}, {}, {}
    error = None
    try:
        for sid in np.asarray(sids).tolist():
            parts = []
            for data in tables:
                pts, vals = _expert_part(data, problem, sid, seed)
                t = np.zeros((len(pts), m))
                w = np.zeros((len(pts), m))
                for k, name in enumerate(data.outputs):
                    j = pde.outputs.index(name)
                    t[:, j] = vals[:, k]
                    sigma = data.spec.noise.get(name)
                    w[:, j] = 1.0 / sigma ** 2 if sigma else 1.0
                parts.append((pts, t, w))
            pts = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 0))
            counts[sid] = len(pts)
            points[sid] = pts
            target[sid] = np.concatenate([p[1] for p in parts])
            weight[sid] = np.concatenate([p[2] for p in parts]) / max(len(pts), 1)
    except (ValueError, OSError) as exc:
        error = exc
    agree(comm, error)
    counts = np.asarray(comm.allreduce(counts), dtype=np.int64)
    return Observations(counts, points, target, weight)


def append_observations(batch, obs: Observations, sids):
    """The batch with ``obs.rows`` more rows per expert holding the observations (after all
    other rows, so the indices of the others do not change; padding rows weigh 0)."""
    K = obs.rows
    if K == 0:
        return batch
    x = batch.x
    E, N, d = x.shape
    m = batch.data_w.shape[-1]
    new_x = x[:, :1].expand(E, K, d).clone()
    new_t = torch.zeros((E, K, m), dtype=x.dtype, device=x.device)
    new_w = torch.zeros_like(new_t)
    for e, sid in enumerate(np.asarray(sids).tolist()):
        k = len(obs.points[sid])
        if k:
            new_x[e, :k] = torch.as_tensor(obs.points[sid], dtype=x.dtype, device=x.device)
            new_t[e, :k] = torch.as_tensor(obs.target[sid], dtype=x.dtype, device=x.device)
            new_w[e, :k] = torch.as_tensor(obs.weight[sid], dtype=x.dtype, device=x.device)

    def grow(a, fill):
        return torch.cat([a, fill], dim=1)

    zeros_m = torch.zeros((E, K, m), dtype=x.dtype, device=x.device)
    return dataclasses.replace(
        batch, x=grow(x, new_x),
        res_w=grow(batch.res_w, torch.zeros((E, K), dtype=x.dtype, device=x.device)),
        bc_w=grow(batch.bc_w, zeros_m), bc_target=grow(batch.bc_target, zeros_m),
        data_w=grow(batch.data_w, new_w), data_target=grow(batch.data_target, new_t),
        value_rows=batch.value_rows + K)

"""The experts of one rank: batched networks of its subdomains, shared unknowns, prediction.

:func:`make_experts` builds the batched networks alone, so that the memory estimate, the
evaluation and the CLI can build experts without a communicator; :class:`Experts` is what
the training holds.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ddpinn.boundary.hard import hard_constraint, hard_tables
from ddpinn.decomposition.locate import locate
from ddpinn.nn.architectures import ExpertSpec, build_architecture
from ddpinn.nn.constraints import initial_constraint
from ddpinn.nn.experts import BatchedExperts
from ddpinn.nn.taylor_engine import make_fields

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_experts(problem, sids, dtype=torch.float64,
                 device=torch.device("cpu")) -> BatchedExperts:
    """The batched experts of subdomains ``sids`` built by the case's
    ``network.architecture``."""
    decomp, net = problem.decomposition, problem.cfg.network
    boxes = [decomp.subdomains[s].box for s in sids]
    box = decomp.box
    periods = tuple(box.width[a] if decomp.periodic[a] else None for a in range(box.dim))
    spec = ExpertSpec(tuple(int(s) for s in sids), tuple(tuple(b.lower) for b in boxes),
                      tuple(tuple(b.upper) for b in boxes), problem.pde.n_out, periods, net,
                      problem.cfg.case.seed, dtype)
    model = build_architecture(net.architecture, spec)
    if net.hard_initial:
        model.output_transform = initial_constraint(
            problem.pde, problem.pde.params, boxes, problem.time_axis,
            problem.cfg.domain.time[0], dtype, device)
    if hard_tables(problem.boundary_conditions):
        model.output_transform = hard_constraint(problem)
    return model


class Experts:
    """The networks of one rank: its batched experts and the replicated unknowns.

    Parameters
    ----------
    problem : Problem
    ownership : Ownership, which subdomains this rank holds
    dtype : torch.dtype
    device : torch.device

    Attributes
    ----------
    model : BatchedMLP, E = ``len(ownership.sids)`` experts (expert on axis 0)
    shared : ParameterDict name -> Parameter (), unknown coefficients of inverse problems,
        the same on every rank
    """

    def __init__(self, problem, ownership, dtype=torch.float64, device=torch.device("cpu")):
        self.pde, self.decomposition = problem.pde, problem.decomposition
        self.ownership, self.dtype, self.device = ownership, dtype, device
        self.model = make_experts(problem, ownership.sids, dtype, device).to(device)
        self.shared = nn.ParameterDict({
            n: nn.Parameter(torch.tensor(float(v), dtype=dtype, device=device))
            for n, v in sorted(problem.cfg.pde.inverse.items())})

    def parameters(self) -> list:
        """The experts' parameters, then the shared ones."""
        return list(self.model.parameters()) + list(self.shared.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def shared_values(self, leaves: bool = False) -> dict:
        """The shared unknowns as one copy per expert, name -> (E, 1).

        ``leaves``: each a fresh leaf that requires grad, so every expert's contribution to
        the gradient stays apart and can be summed in a rank-independent way; else detached
        views."""
        n_local = self.model.n_experts
        if not leaves:
            return {n: p.detach().reshape(1, 1).expand(n_local, 1)
                    for n, p in self.shared.items()}
        return {n: p.detach().reshape(1, 1).expand(n_local, 1).clone().requires_grad_(True)
                for n, p in self.shared.items()}

    def residual_magnitude(self, x: torch.Tensor, derivatives: str) -> np.ndarray:
        """|r| (norm over the equations) at points x (E, N, d) of the experts: (E, N)."""
        x = x.detach().requires_grad_(True)
        fields = make_fields(self.model, x, self.pde.axes, self.pde.outputs, derivatives)
        res = self.pde.residual(fields, {**self.pde.params, **self.shared_values()})
        return res.detach().pow(2).sum(-1).sqrt().double().cpu().numpy()

    def locate(self, points: np.ndarray) -> np.ndarray:
        """Subdomain id of each point: (P, d) -> (P,); a point on an interface belongs to the
        subdomain on its upper side (:mod:`ddpinn.decomposition.locate`)."""
        return locate(points, self.decomposition)

    def predict(self, points: np.ndarray, chunk: int = 8192, values=None,
                n_values: int | None = None) -> np.ndarray | None:
        """Collective. Evaluate the experts at global points (P, d).

        Each rank evaluates the points inside its own subdomains; rank 0 receives the
        assembled (P, n_out) array, other ranks get None. ``values(model, x)`` maps a padded
        batch x (E, n, d) to (E, n, n_values) instead of the outputs (e.g. derivatives).
        """
        if values is None:
            values, n_values = _outputs, self.pde.n_out
        own = self.ownership
        sid_of = self.locate(points)
        # Replicas hold identical experts: the first of each group answers.
        answering = own.sids if own.layout.replica == 0 else []
        mine = np.flatnonzero(np.isin(sid_of, answering))
        out = self._evaluate_at(points, mine, sid_of, chunk, values, n_values)
        parts = own.comm.gather((mine, out))
        if own.comm.rank != 0:
            return None
        result = np.empty((len(points), n_values))
        for idx, vals in parts:
            result[idx] = vals
        return result

    def _evaluate_at(self, points, mine, sid_of, chunk, values, n_values) -> np.ndarray:
        """``values`` at ``points[mine]``, each by the expert of its subdomain: (M, n_values)."""
        out = np.empty((len(mine), n_values))
        if not len(mine):
            return out
        sids = self.ownership.sids
        local = {s: e for e, s in enumerate(sids)}
        e_idx = np.array([local[s] for s in sid_of[mine]])
        counts = np.bincount(e_idx, minlength=len(sids))
        width = max(1, int(counts.max()))
        order = np.argsort(e_idx, kind="stable")
        # Padded batch (E, width, d): each expert evaluates only its own points.
        x = np.repeat(points[mine[order][:1]], len(sids) * width, 0).reshape(
            len(sids), width, -1)
        slot = np.concatenate([np.arange(c) for c in counts])
        x[e_idx[order], slot] = points[mine[order]]
        vals = []
        for i in range(0, width, chunk):
            xb = torch.as_tensor(x[:, i:i + chunk], dtype=self.dtype, device=self.device)
            vals.append(values(self.model, xb).detach().double().cpu().numpy())
        vals = np.concatenate(vals, axis=1)
        out[order] = vals[e_idx[order], slot]
        return out


def _outputs(model, x):
    with torch.no_grad():
        return model(x)

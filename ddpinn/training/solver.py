"""The solver of one rank: its experts, shared parameters, points and interface plan.

One :class:`Solver` per rank owns everything that rank computes with; the communicator is
given to it (never created here).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ddpinn.decomposition import owned_sids, partition
from ddpinn.interface import exchange
from ddpinn.interface.conditions import needed_quantities
from ddpinn.nn import BatchedMLP
from ddpinn.parallel.backends import make_backend
from ddpinn.parallel.reduce import reproducible_sum
from ddpinn.training.loss import local_loss
from ddpinn.training.points import build_points

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_experts(problem, sids, dtype=torch.float64) -> BatchedMLP:
    """The batched experts of subdomains ``sids`` as the case's network section asks."""
    decomp, net = problem.decomposition, problem.cfg.network
    boxes = [decomp.subdomains[s].box for s in sids]
    box = decomp.box
    periods = [box.width[a] if decomp.periodic[a] else None for a in range(box.dim)]
    return BatchedMLP(
        sids, [b.lower for b in boxes], [b.upper for b in boxes], problem.pde.n_out,
        width=net.width, depth=net.depth, activation=net.activation, periods=periods,
        harmonics=net.periodic_harmonics, fourier_features=net.fourier_features,
        fourier_scale=net.fourier_scale, seed=problem.cfg.case.seed, dtype=dtype)


class Solver:
    """Local experts of ``comm.rank`` for a :class:`~ddpinn.problem.Problem`.

    Parameters
    ----------
    problem : Problem
    comm : Comm or SerialComm
    device : torch.device
    """

    def __init__(self, problem, comm, device=torch.device("cpu")):
        cfg = problem.cfg
        self.problem, self.cfg, self.comm, self.device = problem, cfg, comm, device
        self.pde = problem.pde
        self.decomposition = problem.decomposition
        self.dtype = DTYPES[cfg.case.dtype]
        # Wall seconds of each set-up phase on this rank (points and plan: the latest draw).
        self.setup_seconds = {}
        t0 = time.perf_counter()
        self.owner = partition(self.decomposition.grid, comm.size)
        self.sids = owned_sids(self.owner, comm.rank)
        t1 = time.perf_counter()
        self.model = make_experts(problem, self.sids, self.dtype).to(device)
        self.setup_seconds.update(partition=t1 - t0, experts=time.perf_counter() - t1)
        # Unknown coefficients of inverse problems: replicated on every rank.
        self.shared = nn.ParameterDict({
            n: nn.Parameter(torch.tensor(float(v), dtype=self.dtype, device=device))
            for n, v in sorted(cfg.pde.inverse.items())})
        self.backend = make_backend(cfg.parallel.backend, comm)
        self.set_conditions(problem.conditions)
        self.epoch = -1
        self.resample(0)

    def set_conditions(self, names) -> None:
        """Active interface conditions (and hence what is computed and exchanged)."""
        self.conditions = list(names)
        self.quantities = needed_quantities(self.conditions)

    # -- points --------------------------------------------------------------------------
    def resample(self, epoch: int) -> bool:
        """Draw the points of ``epoch``; returns False (and does nothing) when already drawn."""
        if epoch == self.epoch:
            return False
        self.epoch = epoch
        t0 = time.perf_counter()
        self.batch = build_points(self.decomposition, self.sids, self.pde, self.cfg.points,
                                  self.cfg.case.seed, self.pde.params, self.problem.time_axis,
                                  epoch, self.dtype, self.device)
        t1 = time.perf_counter()
        self.plan = exchange.InterfacePlan(self.batch.sides, self.sids, self.owner,
                                           self.comm.rank, self.batch.n_interface,
                                           self.batch.x.shape[1], self.device)
        self.setup_seconds.update(points=t1 - t0, interface_plan=time.perf_counter() - t1)
        return True

    # -- loss ----------------------------------------------------------------------------
    def _backend_int_sum(self, ints: np.ndarray) -> np.ndarray:
        return self.backend.allreduce_sum_(torch.from_numpy(ints.copy())).numpy()

    def parameters(self):
        return list(self.model.parameters()) + list(self.shared.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def closure(self):
        """Collective. Global loss, gradients of local experts and summed shared gradients.

        Returns
        -------
        loss : float, the global objective (sum over all experts)
        metrics : dict name -> float, global sums (bitwise the same on any rank count)
        """
        self.zero_grad()
        n_local, n_total = self.model.n_experts, self.decomposition.n_subdomains
        # Each expert sees its own leaf copy of every shared unknown, shape (E, 1), so the
        # per-expert gradient contributions can be summed in a rank-independent way.
        leaves = {n: p.detach().reshape(1, 1).expand(n_local, 1).clone().requires_grad_(True)
                  for n, p in self.shared.items()}
        terms = local_loss(self.model, self.pde, {**self.pde.params, **leaves}, self.batch,
                           self.plan, self.comm, self.conditions,
                           self.problem.condition_weights, self.cfg.loss, self.quantities,
                           derivatives=self.cfg.network.derivatives)
        terms.total.backward()
        if leaves:
            per_expert = np.stack([
                leaf.grad.reshape(-1).double().cpu().numpy() if leaf.grad is not None
                else np.zeros(n_local) for leaf in leaves.values()], axis=1)
            # One fused allreduce (through the configured backend) for all shared gradients.
            grads = reproducible_sum(self.comm, per_expert, n_total, self._backend_int_sum)
            for p, g in zip(self.shared.values(), grads):
                p.grad = torch.tensor(g, dtype=p.dtype, device=p.device)
        keys = sorted(terms.metrics)
        per_expert = np.stack([terms.metrics[k] for k in keys], axis=1)  # (E, K)
        totals = reproducible_sum(self.comm, per_expert, n_total)
        metrics = dict(zip(keys, (float(v) for v in totals)))
        for kind in ("space", "time"):
            n = metrics.pop(f"sides_{kind}")
            metrics[f"mismatch_{kind}"] = metrics[f"mismatch_{kind}"] / n if n else 0.0
        for n, p in self.shared.items():
            metrics[f"param_{n}"] = float(p.detach())
        return metrics["loss"], metrics

    # -- evaluation ----------------------------------------------------------------------
    def locate(self, points: np.ndarray) -> np.ndarray:
        """Subdomain id of each point: (P, d) -> (P,)."""
        box, grid = self.decomposition.box, np.asarray(self.decomposition.grid)
        frac = (points - np.asarray(box.lower)) / box.width
        idx = np.clip(np.floor(frac * grid).astype(int), 0, grid - 1)
        return np.ravel_multi_index(tuple(idx.T), tuple(grid))

    def predict(self, points: np.ndarray, chunk: int = 8192) -> np.ndarray | None:
        """Collective. Evaluate the experts at global points (P, d).

        Each rank evaluates the points inside its own subdomains; rank 0 receives the
        assembled (P, n_out) array, other ranks get None.
        """
        sid_of = self.locate(points)
        local = {s: e for e, s in enumerate(self.sids)}
        mine = np.flatnonzero(np.isin(sid_of, self.sids))
        out = np.empty((len(mine), self.pde.n_out))
        if len(mine):
            e_idx = np.array([local[s] for s in sid_of[mine]])
            counts = np.bincount(e_idx, minlength=len(self.sids))
            width = max(1, int(counts.max()))
            order = np.argsort(e_idx, kind="stable")
            # Padded batch (E, width, d): each expert evaluates only its own points.
            x = np.repeat(points[mine[order][:1]], len(self.sids) * width, 0).reshape(
                len(self.sids), width, -1)
            slot = np.concatenate([np.arange(c) for c in counts])
            x[e_idx[order], slot] = points[mine[order]]
            with torch.no_grad():
                vals = []
                for i in range(0, width, chunk):
                    xb = torch.as_tensor(x[:, i:i + chunk], dtype=self.dtype, device=self.device)
                    vals.append(self.model(xb).double().cpu().numpy())
                vals = np.concatenate(vals, axis=1)
            out[order] = vals[e_idx[order], slot]
        parts = self.comm.gather((mine, out))
        if self.comm.rank != 0:
            return None
        result = np.empty((len(points), self.pde.n_out))
        for idx, vals in parts:
            result[idx] = vals
        return result

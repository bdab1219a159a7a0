"""The batched experts of a problem's subdomains, as its network section asks.

Kept apart from :mod:`ddpinn.training.solver` so that the memory estimate, the evaluation and
the CLI can build experts without importing the solver.
"""
from __future__ import annotations

import torch

from ddpinn.nn import BatchedMLP
from ddpinn.nn.constraints import initial_constraint

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_experts(problem, sids, dtype=torch.float64, device=torch.device("cpu")) -> BatchedMLP:
    """The batched experts of subdomains ``sids`` as the case's network section asks."""
    decomp, net = problem.decomposition, problem.cfg.network
    boxes = [decomp.subdomains[s].box for s in sids]
    box = decomp.box
    periods = [box.width[a] if decomp.periodic[a] else None for a in range(box.dim)]
    model = BatchedMLP(
        sids, [b.lower for b in boxes], [b.upper for b in boxes], problem.pde.n_out,
        width=net.width, depth=net.depth, activation=net.activation, periods=periods,
        harmonics=net.periodic_harmonics, fourier_features=net.fourier_features,
        fourier_scale=net.fourier_scale, seed=problem.cfg.case.seed, dtype=dtype)
    if net.hard_initial:
        model.output_transform = initial_constraint(
            problem.pde, problem.pde.params, boxes, problem.time_axis,
            problem.cfg.domain.time[0], dtype, device)
    return model

"""The batched experts of a problem's subdomains, as its network section asks.

Kept apart from :mod:`ddpinn.training.solver` so that the memory estimate, the evaluation and
the CLI can build experts without importing the solver.
"""
from __future__ import annotations

import torch

from ddpinn.nn.architectures import ExpertSpec, build_architecture
from ddpinn.nn.constraints import initial_constraint
from ddpinn.nn.experts import BatchedExperts

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
    return model

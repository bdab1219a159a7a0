"""Precision per stage (``stages.dtype``): converting a solver between float32 and float64.

At a switch the parameters and shared parameters are cast (their values carry over), while
everything derived from the case (the experts' input normalisation and features, the hard
initial constraint, the points, the interface plan) is built anew at the new precision, so
a float64 stage after a float32 one computes as a float64 run would from the same
parameters. Adapted (R3) interior points are state and are cast.
"""
from __future__ import annotations

import torch

from ddpinn.training.experts import DTYPES, make_experts
from ddpinn.training.resampling import adapted_points


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` or ``"float64"`` for a torch dtype (the names of :data:`DTYPES`)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"dtype {dtype} is not one of {', '.join(DTYPES)}")


def largest_dtype(cfg) -> str:
    """The widest precision of the case's stages (its memory estimate uses this one)."""
    names = [st.dtype or cfg.case.dtype for st in cfg.stages] or [cfg.case.dtype]
    return max(names, key=lambda n: torch.empty(0, dtype=DTYPES[n]).element_size())


def first_dtype(cfg) -> str:
    """The precision a solver is built in: the first stage's."""
    return (cfg.stages[0].dtype if cfg.stages else None) or cfg.case.dtype


def convert_solver(solver, name: str) -> bool:
    """Convert ``solver`` (this rank's experts, shared parameters and points) to precision
    ``name``; returns False when it already has it. Not collective: every rank converts its
    own state alike and no value crosses ranks.

    The experts are rebuilt (parameter values copied in, cast): an optimizer built before the
    switch holds stale tensors and must be built anew.
    """
    dtype = DTYPES[name]
    if solver.dtype == dtype:
        return False
    adapted = solver.interior_points() if adapted_points(solver.cfg) else None
    fresh = make_experts(solver.problem, solver.sids, dtype, solver.device).to(solver.device)
    with torch.no_grad():
        old = dict(solver.model.named_parameters())
        for n, p in fresh.named_parameters():
            p.copy_(old[n])  # (E, ...) cast to the new precision
    solver.model = fresh
    solver.shared.to(dtype)  # keeps the Parameter objects, casts their data
    solver.dtype = dtype
    epoch, solver.epoch = solver.epoch, -1
    solver.resample(epoch)  # the same epoch's points, drawn at the new precision
    if adapted is not None:
        solver.set_interior(adapted)
    return True

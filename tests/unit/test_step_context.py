"""The solver's parts: the step context (built per point epoch, replaced by stage switches),
the closure's metrics leaving the device once per evaluation, and the solver surface that
optimizer adapters use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.io.config import load
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem
from ddpinn.training.context import Closure, StepContext
from ddpinn.training.experts import Experts
from ddpinn.training.loss import local_loss
from ddpinn.training.ownership import Ownership
from ddpinn.training.solver import Solver

CASES = Path(__file__).resolve().parents[2] / "cases"
SMALL = ["case.dtype=float64", "case.seed=2", "network.width=8", "network.depth=2",
         "points.interior=40", "points.boundary=6", "points.interface=6",
         "decomposition.grid=[2, 2]"]


def solver_of(case: str, *extra) -> Solver:
    return Solver(build_problem(load(CASES / f"{case}.toml", [*SMALL, *extra])), SerialComm())


@pytest.fixture
def host_copies(monkeypatch):
    """Counts Tensor.cpu() calls (every device -> host copy of the step goes through it)."""
    calls = []
    cpu = torch.Tensor.cpu

    def counted(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counted)
    return calls


@pytest.mark.parametrize("case, copies", [("heat1d", 1), ("heat1d_inverse", 2)])
def test_metrics_leave_the_device_as_one_block(case, copies, host_copies):
    """One (E, K) block of per-expert metrics per evaluation (and one (E, n_shared) block of
    shared gradients for an inverse problem), never one copy per metric."""
    solver = solver_of(case)
    host_copies.clear()
    loss, metrics = solver.closure()
    n_experts = solver.model.n_experts
    assert len(host_copies) == copies, host_copies
    n_metrics = len([k for k in metrics if not k.startswith("param_")]) + 2  # + sides_*
    assert (n_experts, n_metrics) in host_copies
    assert np.isfinite(loss) and loss == metrics["loss"]


def test_local_loss_metrics_are_device_tensors_per_expert():
    solver = solver_of("heat1d")
    terms = local_loss(solver.ctx, solver.model, solver.pde.params)
    for name, value in terms.metrics.items():
        assert isinstance(value, torch.Tensor) and not value.requires_grad, name
        assert value.shape == (solver.model.n_experts,), name
        assert value.device == solver.batch.x.device, name


def test_context_is_drawn_per_epoch_and_keeps_the_stage_switches():
    solver = solver_of("heat1d", "causal.chunks=4")
    first = solver.ctx
    assert solver.resample(0) is False and solver.ctx is first  # same epoch: kept
    solver.set_conditions(["solution_continuity"])
    assert solver.ctx.batch is first.batch and solver.quantities == ("u",)
    solver.use_causal = False
    assert solver.ctx.causal is None and solver.closure.begin_step() is False
    assert solver.resample(1) is True
    drawn = solver.ctx
    assert drawn.batch is not first.batch and drawn.plan is not first.plan
    assert not torch.equal(drawn.batch.x, first.batch.x)
    # A new epoch keeps the stage's conditions and causal switch.
    assert list(drawn.conditions.names) == ["solution_continuity"] and drawn.causal is None
    solver.use_causal = True
    assert solver.ctx.causal is solver.causal and solver.closure.begin_step() is True


def test_parts_compose_into_the_same_closure():
    """Ownership, experts and a context built by hand evaluate what the solver evaluates."""
    solver = solver_of("heat1d_inverse")
    problem = solver.problem
    own = Ownership.build(SerialComm(), problem.decomposition, 1, "mpi4py")
    assert own.sids == solver.sids and np.array_equal(own.owner, solver.owner)
    experts = Experts(problem, own)
    closure = Closure(experts, own, solver.ctx, solver.closure.means)
    assert closure() == solver.closure()
    for mine, theirs in zip(experts.parameters(), solver.parameters()):
        assert torch.equal(mine.grad, theirs.grad)


def test_optimizer_surface():
    """What docs/plugins.md promises an optimizer adapter."""
    solver = solver_of("heat1d_inverse")
    params = solver.parameters()
    assert params == list(solver.model.parameters()) + list(solver.shared.parameters())
    assert list(solver.shared) == ["kappa"]
    assert solver.layout.peer_comm.size == 1
    assert solver.decomposition.n_subdomains == 4
    loss, metrics = solver.closure()
    assert all(p.grad is not None for p in params)
    assert isinstance(StepContext.of(solver.pde, solver.batch, solver.plan, SerialComm(),
                                     ["solution_continuity"]).quantities, tuple)

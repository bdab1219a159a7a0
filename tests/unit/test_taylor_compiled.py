"""The compiled Taylor sweep (``network.compile = true``) gives the eager engine's numbers.

Float64, real decompositions: values, derivatives, residuals, interface quantities and
parameter gradients agree with the eager Taylor engine to 1e-10; the second-order channels a
loss asks for are recorded by a first, eager step and then come from the sweep alone; a loss that
would be differentiated twice (``residual_gradient``) runs eagerly; a two-rank run with
``--set network.compile=true`` follows the eager run's loss history. Compiling takes seconds,
so the cases are few.
"""
from __future__ import annotations

import pytest
import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import QUANTITIES
from ddpinn.nn import TaylorFields, make_fields
from ddpinn.nn.taylor import TaylorSweep
from tests.mpi.conftest import ROOT, check, losses, run_case
from tests.unit.test_taylor import close, one_thread, setup  # noqa: F401  (autouse fixture)

pytest.importorskip("torch._inductor")

ONE_BACKWARD = tuple(q for q in QUANTITIES if q != "gres")


def _quantities(f, pde, plan):
    """Residual, interface quantities (no gradient of the residual), flux, Laplacian, and a
    scalar loss of them."""
    out = {"u": f.u, "res": pde.residual(f, pde.params)}
    mine = exchange.interface_values(plan, f, out["res"], pde, pde.params, ONE_BACKWARD)
    out.update({f"if_{q}": v for q, v in mine.items()})
    out["flux"] = pde.flux(f, pde.params)
    out["lap"] = f.laplacian(0)
    loss = sum(v.pow(2).mean() for v in out.values())
    return out, loss


@pytest.mark.parametrize("name,dim,activation,encoded", [
    ("beltrami", 3, "tanh", True), ("kovasznay", 2, "silu", False)])
def test_compiled_sweep_matches_the_eager_engine(name, dim, activation, encoded):
    pde, batch, plan, model = setup(name, dim, activation, encoded)
    params = list(model.parameters())

    def both(step):
        x = batch.x.detach().clone().requires_grad_(True)
        eager, loss_e = _quantities(TaylorFields(model, x, pde.axes, pde.outputs), pde, plan)
        fields = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
        got, loss_c = _quantities(fields, pde, plan)
        for key in eager:
            close(got[key], eager[key], f"{name} step {step}: {key}")
        for i, (a, b) in enumerate(zip(torch.autograd.grad(loss_e, params),
                                       torch.autograd.grad(loss_c, params))):
            close(b, a, f"{name} step {step}: d loss / d param {i}")
        return fields

    first = both(0)
    sweep = TaylorSweep.of(model, pde.axes, pde.outputs)
    assert first._sweep is None and sweep.keys    # the first step ran eagerly and recorded
    with torch.no_grad():                         # an optimizer step: new weights
        for p in params:
            p.mul_(0.9)
    second = both(1)
    assert second._sweep is sweep and second._eager is None  # all from the compiled sweep
    # A channel not asked for before: eagerly this once, and in the sweep from then on.
    x = batch.x.detach().clone().requires_grad_(True)
    third = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
    close(third.d2(0, 0, 1), TaylorFields(model, x, pde.axes, pde.outputs).d2(0, 0, 1),
          "a new mixed second derivative")
    assert third._eager is not None and ((0, 1),) in sweep.keys
    fourth = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
    fourth.d2(0, 0, 1)
    assert fourth._eager is None


def test_compiled_sweep_refuses_a_second_backward():
    pde, batch, plan, model = setup("poisson", 2, "tanh", False)
    x = batch.x.detach().clone().requires_grad_(True)
    make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True).laplacian(0)
    fields = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
    with pytest.raises(RuntimeError, match="eager engine"):
        fields.grad_of(fields.value(0))


RES_GRAD = ("interface.conditions=['average_solution', 'residual_gradient']",
            "interface.weights={average_solution=10.0, residual_gradient=0.001}")


def test_two_rank_run_with_compile_follows_the_eager_run(tmp_path):
    """Poisson 2D on 2 ranks, float64: the same loss history to 1e-9 with the compiled sweep;
    a condition set with residual_gradient trains too (eagerly)."""
    case = ROOT / "cases" / "poisson2d.toml"
    common = ["case.dtype='float64'", "stages.0.steps=6", "stages.1.steps=2",
              "network.width=16", "points.interior=64", "output.log_every=1",
              "output.eval_every=0", "output.checkpoint_every=0"]
    runs = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        proc, _ = run_case(2, case, out, *common, f"network.compile={flag}", timeout=600,
                           quiet=False)
        check(proc)
        runs[flag] = losses(out)
        assert ("compiled the Taylor sweep in" in proc.stderr) == (flag == "true"), proc.stderr
    assert runs["true"].keys() == runs["false"].keys() and len(runs["true"]) >= 8
    for step, ref in runs["false"].items():
        assert abs(runs["true"][step] - ref) <= 1e-9 * abs(ref), (step, runs)
    out = tmp_path / "gres"
    proc, _ = run_case(2, case, out, *common, "network.compile=true", *RES_GRAD, timeout=600,
                       quiet=False)
    check(proc)
    assert "compiling the Taylor sweep" not in proc.stderr  # gres needs the eager engine
    assert len(losses(out)) >= 8

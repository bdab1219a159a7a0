"""The compiled Taylor sweep (``network.compile = true``) gives the eager engine's numbers.

Float64, real decompositions: values, derivatives, residuals, interface quantities and
parameter gradients agree with the eager Taylor engine to 1e-10 step after step; the sweep
compiles once for the channels a loss asks for (counted in its log), once more when a new
channel is asked for, and not again; a second backward pass is refused. Compiling takes
seconds, so the cases are few. The multi-rank run is in ``tests/mpi/test_taylor_compiled.py``.
"""
from __future__ import annotations

import logging

import pytest
import torch

from ddpinn.interface import exchange
from ddpinn.interface.conditions import QUANTITIES
from ddpinn.nn import TaylorFields, make_fields
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


def _compilations(caplog) -> int:
    """How many times a Taylor sweep has compiled so far (its log says so, every time)."""
    return sum(r.getMessage().startswith("compiling the Taylor sweep") for r in caplog.records)


@pytest.mark.parametrize("name,dim,activation,encoded", [
    ("beltrami", 3, "tanh", True), ("kovasznay", 2, "silu", False)])
def test_compiled_sweep_matches_the_eager_engine(name, dim, activation, encoded, caplog):
    caplog.set_level(logging.INFO, logger="ddpinn")
    pde, batch, plan, model = setup(name, dim, activation, encoded)
    params = list(model.parameters())

    def both(step, quantities=_quantities):
        x = batch.x.detach().clone().requires_grad_(True)
        eager, loss_e = quantities(TaylorFields(model, x, pde.axes, pde.outputs), pde, plan)
        fields = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
        got, loss_c = quantities(fields, pde, plan)
        for key in eager:
            close(got[key], eager[key], f"{name} step {step}: {key}")
        for i, (a, b) in enumerate(zip(torch.autograd.grad(loss_e, params),
                                       torch.autograd.grad(loss_c, params))):
            close(b, a, f"{name} step {step}: d loss / d param {i}")
        with torch.no_grad():  # an optimizer step: new weights
            for p in params:
                p.mul_(0.97)

    both(0)
    assert _compilations(caplog) == 0  # the first step runs eagerly (it learns the channels)
    both(1)
    assert _compilations(caplog) == 1  # then one compilation with all of them
    both(2)
    assert _compilations(caplog) == 1  # and no other for the same points and channels

    def with_mixed(f, pde, plan):  # a second derivative not asked for before
        out, loss = _quantities(f, pde, plan)
        out["d2_01"] = f.d2(0, 0, 1)
        return out, loss + out["d2_01"].pow(2).mean()

    both(3, with_mixed)  # the new channel is computed eagerly this once ...
    assert _compilations(caplog) == 1
    both(4, with_mixed)  # ... and is part of the sweep from then on: one recompilation
    assert _compilations(caplog) == 2
    both(5, with_mixed)
    assert _compilations(caplog) == 2


def test_compiled_sweep_refuses_a_second_backward():
    pde, batch, plan, model = setup("poisson", 2, "tanh", False)
    x = batch.x.detach().clone().requires_grad_(True)
    make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True).laplacian(0)
    fields = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
    with pytest.raises(RuntimeError, match="eager engine"):
        fields.grad_of(fields.value(0))

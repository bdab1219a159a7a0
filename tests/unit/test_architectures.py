"""Network architectures as a registry: ``network.architecture`` picks the builder (a
registered name or ``"package.module:Name"``), a bad name is one error naming the field and
the choices, and the derivative engine follows from the built model."""
from __future__ import annotations

import pytest
import torch

from ddpinn.io.config import ConfigError, load
from ddpinn.nn import ARCHITECTURES, BatchedMLP, Fields, TaylorFields, make_fields
from ddpinn.nn.architectures import register_architecture
from ddpinn.problem import build_problem
from ddpinn.training.experts import make_experts
from tests.mpi.residual_mlp import ResidualMLP

SMALL = ["network.width=6", "network.depth=2", "case.dtype='float64'"]


def _problem(case, *sets):
    return build_problem(load(case, [*SMALL, *sets]))


def test_default_is_the_mlp_and_a_plugin_path_builds_its_class(poisson_toml):
    assert "mlp" in ARCHITECTURES
    model = make_experts(_problem(poisson_toml), [1, 3])
    assert type(model) is BatchedMLP and model.sids == [1, 3]
    plugin = make_experts(_problem(
        poisson_toml, 'network.architecture="tests.mpi.residual_mlp:ResidualMLP"'), [1, 3])
    assert type(plugin) is ResidualMLP and plugin.sids == [1, 3]
    assert ARCHITECTURES["residual_mlp"] is ResidualMLP  # importing it registered it
    # An expert is the same whichever experts share its batch (sid-keyed streams).
    alone = make_experts(_problem(
        poisson_toml, 'network.architecture="residual_mlp"'), [3])
    assert torch.equal(alone.w[0][0], plugin.w[0][1])


def test_a_registered_builder_is_used(poisson_toml):
    calls = []

    @register_architecture("test_wide_mlp")
    def wide(spec):
        calls.append(spec)
        return ARCHITECTURES["mlp"](spec)

    try:
        model = make_experts(_problem(poisson_toml, 'network.architecture="test_wide_mlp"'),
                             [0, 2])
    finally:
        del ARCHITECTURES["test_wide_mlp"]
    assert len(calls) == 1 and calls[0].sids == (0, 2) and calls[0].out_dim == 1
    assert type(model) is BatchedMLP and model.weights[0].shape[-1] == 6


@pytest.mark.parametrize("name,message", [
    ("nope", r"'network.architecture' = 'nope' is not allowed; choose one of: mlp"),
    ("tests.mpi.residual_mlp:Missing", r"'network.architecture' = .* cannot be imported"),
    ("no_such_package.mod:Net", r"'network.architecture' = .* cannot be imported")])
def test_bad_architecture_names_the_field(poisson_toml, name, message):
    with pytest.raises(ConfigError, match=message):
        _problem(poisson_toml, f'network.architecture="{name}"')


def test_engine_follows_the_model(poisson_toml):
    problem = _problem(poisson_toml)
    x = torch.rand(2, 5, 2, dtype=torch.float64, requires_grad=True)
    mlp = make_experts(problem, [0, 1])
    assert type(make_fields(mlp, x, ("x", "y"), ("u",), "taylor")) is TaylorFields
    residual = make_experts(_problem(
        poisson_toml, 'network.architecture="residual_mlp"'), [0, 1])
    f = make_fields(residual, x, ("x", "y"), ("u",), "taylor")
    assert type(f) is Fields  # no Taylor support claimed: autograd, and correct
    torch.testing.assert_close(f.u, residual(x))
    with pytest.raises(TypeError, match="supports_taylor"):
        TaylorFields(residual, x, ("x", "y"), ("u",))

"""Interface conditions: each vanishes when the two sides agree (and satisfy the PDE, for
the residual-type ones), is positive when they do not, and is one value per side."""
from __future__ import annotations

import pytest
import torch

from ddpinn.interface import CONDITIONS, DEFAULT_CONDITIONS, get_condition
from ddpinn.interface.conditions import QUANTITIES, needed_quantities

RESIDUAL_TYPE = ("res", "gres")
S, N, C = 3, 16, 4


def random_sides(seed, zero_residuals=False):
    g = torch.Generator().manual_seed(seed)
    out = {q: torch.randn(S, N, C, dtype=torch.float64, generator=g) for q in QUANTITIES}
    if zero_residuals:
        for q in RESIDUAL_TYPE:
            out[q] = torch.zeros_like(out[q])
    out["downstream"] = torch.ones(S, dtype=torch.float64)  # local context, not a quantity
    return out


def test_registry_and_default_set():
    assert DEFAULT_CONDITIONS == ("average_solution", "residual_continuity")
    assert set(DEFAULT_CONDITIONS) <= set(CONDITIONS)
    assert len(CONDITIONS) >= 9
    for name, cond in CONDITIONS.items():
        assert cond.name == name
        assert cond.needs and set(cond.needs) <= set(QUANTITIES), name
        assert cond.doc, f"condition {name} has no docstring"
        assert get_condition(name) is cond


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_vanishes_when_sides_agree(name):
    mine = random_sides(0, zero_residuals=True)
    other = {q: v.clone() for q, v in mine.items()}
    value = CONDITIONS[name].fn(mine, other)
    assert value.shape == (S,)
    assert torch.all(value == 0), (name, value)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_positive_when_sides_differ(name):
    mine, other = random_sides(1), random_sides(2)
    value = CONDITIONS[name].fn(mine, other)
    assert value.shape == (S,)
    assert value.dtype == torch.float64
    assert torch.all(value > 0), (name, value)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_only_reads_what_it_needs(name):
    """Quantities a condition does not declare must not influence it (they are neither
    computed nor exchanged)."""
    cond = CONDITIONS[name]
    mine, other = random_sides(3), random_sides(4)
    base = cond.fn(mine, other)
    only = {q: v for q, v in mine.items() if q in cond.needs or q == "downstream"}
    only_other = {q: v for q, v in other.items() if q in cond.needs}
    torch.testing.assert_close(cond.fn(only, only_other), base, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_is_per_side(name):
    """Side s's penalty depends on side s only."""
    cond = CONDITIONS[name]
    mine, other = random_sides(5), random_sides(6)
    base = cond.fn(mine, other)
    changed = {q: v.clone() for q, v in mine.items()}
    for q in QUANTITIES:
        changed[q][1] += 3.0
    new = cond.fn(changed, other)
    assert new[0] == base[0] and new[2] == base[2]
    assert new[1] != base[1]


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_condition_is_differentiable_in_mine(name):
    cond = CONDITIONS[name]
    mine = {q: v.requires_grad_(q != "downstream") for q, v in random_sides(7).items()}
    other = random_sides(8)
    cond.fn(mine, other).sum().backward()
    used = [q for q in cond.needs if mine[q].grad is not None and mine[q].grad.abs().sum() > 0]
    assert used, name


def test_closed_forms():
    mine, other = random_sides(9), random_sides(10)

    def ms(t):
        return t.pow(2).sum(-1).mean(-1)

    fn = {n: c.fn for n, c in CONDITIONS.items()}
    torch.testing.assert_close(fn["solution_continuity"](mine, other), ms(mine["u"] - other["u"]))
    # XPINN average: u - (u + u')/2 = (u - u')/2 -> a quarter of solution continuity.
    torch.testing.assert_close(fn["average_solution"](mine, other),
                               0.25 * ms(mine["u"] - other["u"]))
    torch.testing.assert_close(fn["interface_residual"](mine, other), ms(mine["res"]))
    torch.testing.assert_close(fn["residual_continuity"](mine, other),
                               ms(mine["res"] - other["res"]))
    torch.testing.assert_close(fn["flux_continuity"](mine, other),
                               ms(mine["flux"] - other["flux"]))
    torch.testing.assert_close(fn["residual_gradient"](mine, other), ms(mine["gres"]))


@pytest.mark.parametrize("names", [
    [], ["average_solution"], list(DEFAULT_CONDITIONS), ["flux_continuity"],
    ["residual_gradient", "normal_derivative_continuity"],
    ["second_normal_derivative_continuity", "tangential_second_derivative_continuity"],
    sorted(CONDITIONS),
])
def test_needed_quantities(names):
    q = needed_quantities(names)
    assert q[0] == "u"
    expected = {"u"}.union(*[set(CONDITIONS[n].needs) for n in names]) if names else {"u"}
    assert set(q) == expected
    assert list(q) == [x for x in QUANTITIES if x in expected]  # fixed order
    assert len(q) == len(set(q))


def test_needed_quantities_examples():
    assert needed_quantities([]) == ("u",)
    assert needed_quantities(DEFAULT_CONDITIONS) == ("u", "res")
    assert needed_quantities(["flux_continuity", "residual_gradient"]) == ("u", "flux", "gres")
    assert needed_quantities(["interface_residual", "residual_continuity"]) == ("u", "res")


@pytest.mark.parametrize("call", [get_condition, lambda n: needed_quantities([n])])
def test_unknown_condition_is_rejected(call):
    with pytest.raises(ValueError) as exc:
        call("bogus_condition")
    msg = str(exc.value)
    assert "'bogus_condition'" in msg and "interface.conditions" in msg
    for name in CONDITIONS:
        assert name in msg


@pytest.mark.parametrize("name,q", [("upwind_solution", "u"),
                                    ("upwind_normal_derivative", "dn")])
def test_upwind_conditions_constrain_the_downstream_side_only(name, q):
    mine, other = random_sides(11), random_sides(12)
    mine["downstream"] = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    value = CONDITIONS[name].fn(mine, other)
    full = (mine[q] - other[q]).pow(2).sum(-1).mean(-1)
    torch.testing.assert_close(value, full * mine["downstream"], rtol=0, atol=0)
    assert value[1] == 0 and value[0] > 0 and value[2] > 0
    assert not CONDITIONS[name].symmetric and not CONDITIONS[name].candidate

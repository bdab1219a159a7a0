"""Quantities of interest: forces on closed-form flow fields (Gauss, Couette), probes at the
expert that holds them, and the checks of the [output] fields."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddpinn.geometry import Box
from ddpinn.io.config import ConfigError, load
from ddpinn.problem import build_problem
from ddpinn.quantities_of_interest import Quantities, parse_quantities
from ddpinn.quantities_of_interest.compute import (QuantityEvaluator, experts_predict,
                                                   traction_force)
from ddpinn.quantities_of_interest.spec import ForceSpec

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("u", "v", "p")


def flow_field(u, v, p, grad_u, grad_v):
    """predict(points) of a closed-form 2D steady field: columns u, v, p, u_x, u_y, v_x, v_y,
    p_x, p_y (p's derivatives are not used by the force)."""
    def predict(x):
        zero = np.zeros(len(x))
        cols = [u(x), v(x), p(x), *grad_u(x), *grad_v(x), zero, zero]
        return np.stack([np.broadcast_to(c, zero.shape) for c in cols], axis=1)
    return predict


class DiskRule:
    """A parametric rule on a circle (the body of a disk-shaped hole): points, normals of
    the fluid domain (pointing into the disk) and equal weights."""

    tags = ("wall", "cylinder")

    def __init__(self, center=(0.2, 0.2), radius=0.05):
        self.c, self.r = np.asarray(center), radius

    def quadrature(self, tag, n, rng):
        theta = (np.arange(n) + rng.random()) * 2 * math.pi / n
        e_r = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        return self.c + self.r * e_r, -e_r, np.full(n, 2 * math.pi * self.r / n)


def problem_of(shape=None, box=Box((0.0, 0.0), (2.2, 0.41), ("x", "y")), nu=1e-3):
    pde = SimpleNamespace(outputs=OUTPUTS, n_out=3, params={"nu": nu}, name="ns")
    return SimpleNamespace(pde=pde, box=box, time_axis=None, shape=shape)


def force(problem, predict, tag="cylinder", scale=1.0, n=400):
    q = Quantities((ForceSpec(tag, "body", scale, n),))
    return QuantityEvaluator(q, problem).values(predict)


def test_uniform_pressure_gives_no_force():
    zero = lambda x: np.zeros(len(x))  # noqa: E731
    predict = flow_field(zero, zero, lambda x: np.full(len(x), 3.7), lambda x: (zero(x),) * 2,
                         lambda x: (zero(x),) * 2)
    out = force(problem_of(DiskRule()), predict)
    assert abs(out["body_drag"]) < 1e-14 and abs(out["body_lift"]) < 1e-14


def test_pressure_falling_downstream_pushes_the_disk_downstream():
    """p = -x: F = - integral p n_fluid ds = integral over the disk of -grad p = (pi r^2, 0)."""
    r = 0.05
    zero = lambda x: np.zeros(len(x))  # noqa: E731
    predict = flow_field(zero, zero, lambda x: -x[:, 0], lambda x: (zero(x),) * 2,
                         lambda x: (zero(x),) * 2)
    out = force(problem_of(DiskRule(radius=r)), predict, scale=500.0)
    assert out["body_drag"] == pytest.approx(500.0 * math.pi * r ** 2, rel=1e-12)
    assert abs(out["body_lift"]) < 1e-14


def test_couette_shear_drags_the_wall_along():
    """u = g y over the wall y = 0 of a box: the wall feels nu g per unit length along x."""
    g, nu = 2.5, 0.01
    zero = lambda x: np.zeros(len(x))  # noqa: E731
    predict = flow_field(lambda x: g * x[:, 1], zero, zero,
                         lambda x: (zero(x), np.full(len(x), g)), lambda x: (zero(x),) * 2)
    box = Box((0.0, 0.0), (3.0, 1.0), ("x", "y"))
    out = force(problem_of(None, box, nu), predict, tag="y_lower")
    assert out["body_drag"] == pytest.approx(nu * g * 3.0, rel=1e-12)
    assert abs(out["body_lift"]) < 1e-14
    # the lid y = 1 (normal +y) is dragged backwards by the same shear
    assert force(problem_of(None, box, nu), predict, tag="y_upper")["body_drag"] == \
        pytest.approx(-nu * g * 3.0, rel=1e-12)


def test_traction_uses_the_symmetric_gradient():
    """u = (0, g x): grad u + grad u^T = [[0, g], [g, 0]] gives a shear on an x face too."""
    g, nu = 1.5, 0.1
    vals = np.zeros((1, 3 + 3 * 2))
    vals[0, 3 + 2 * 1 + 0] = g  # d v / d x
    f = traction_force(vals, np.array([[0.0, -1.0]]), np.ones(1), 3, 2, 2, nu)
    np.testing.assert_allclose(f, [nu * g, 0.0])


def test_probes_and_differences():
    q = parse_quantities(SimpleNamespace(forces=[], probes={"front": [0.15, 0.2],
                                                            "back": [0.25, 0.2]},
                                         probe_differences={"delta_p": ["p", "front", "back"]}))
    predict = flow_field(lambda x: x[:, 0], lambda x: x[:, 1], lambda x: 1 - 2 * x[:, 0],
                         lambda x: (np.ones(len(x)), np.zeros(len(x))),
                         lambda x: (np.zeros(len(x)), np.ones(len(x))))
    out = QuantityEvaluator(q, problem_of()).values(predict)
    assert out["front_u"] == pytest.approx(0.15) and out["back_v"] == pytest.approx(0.2)
    assert out["delta_p"] == pytest.approx((1 - 0.3) - (1 - 0.5))
    assert list(out) == q.keys(2, OUTPUTS)


def test_probes_are_evaluated_by_the_expert_that_holds_them():
    """A checkpoint-like state of distinct experts on a 2 x 1 grid: each probe takes the
    value of the subdomain it lies in."""
    from ddpinn.eval_experts import RankExperts
    from ddpinn.parallel import SerialComm
    from ddpinn.training.experts import make_experts

    cfg = load(ROOT / "cases" / "poisson2d.toml",
               ["decomposition.grid=[2, 1]", "case.dtype=float64",
                "output.probes={left = [0.2, 0.3], right = [0.7, 0.6]}"])
    problem = build_problem(cfg)
    model = make_experts(problem, [0, 1])
    named = dict(model.named_parameters())
    state = {"format": 1, "experts": {s: {f"param/{n}": p[s].detach().clone()
                                          for n, p in named.items()} for s in (0, 1)}}
    experts = RankExperts(problem, SerialComm(), state)
    q = parse_quantities(cfg.output)
    out = QuantityEvaluator(q, problem).values(experts_predict(experts))
    for name, sid in (("left", 0), ("right", 1)):
        x = torch.tensor([[q.probes[name]]], dtype=torch.float64)
        alone = make_experts(problem, [sid])
        with torch.no_grad():
            for n, p in alone.named_parameters():
                p.copy_(named[n][sid:sid + 1])
            want = alone(x)[0, 0, 0].item()
        other = make_experts(problem, [1 - sid])
        with torch.no_grad():
            for n, p in other.named_parameters():
                p.copy_(named[n][1 - sid:2 - sid])
            wrong = other(x)[0, 0, 0].item()
        assert out[f"{name}_u"] == pytest.approx(want, rel=1e-12)
        assert abs(want - wrong) > 1e-6


@pytest.mark.parametrize("override, field", [
    ("output.forces=[{tag = \"cylinder\"}]", "output.forces[0].tag"),
    ("output.forces=[{tag = \"x_lower\", scale = \"big\"}]", "output.forces[0].scale"),
    ("output.forces=[{tag = \"x_lower\", colour = 1}]", "output.forces[0].colour"),
    ("output.probes={far = [5.0, 0.0]}", "output.probes.far"),
    ("output.probes={short = [0.1]}", "output.probes.short"),
    ("output.probe_differences={d = [\"p\", \"a\", \"b\"]}", "output.probe_differences.d"),
])
def test_bad_fields_are_named(override, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        build_problem(load(ROOT / "cases" / "kovasznay.toml", [override]))


def test_a_force_needs_a_flow_pde():
    with pytest.raises(ConfigError, match=r"output.forces\[0\].*outputs u, v, p"):
        build_problem(load(ROOT / "cases" / "poisson2d.toml",
                           ["output.forces=[{tag = \"x_lower\"}]"]))


def test_a_box_domain_force_and_probe_are_accepted():
    cfg = load(ROOT / "cases" / "kovasznay.toml",
               ["output.forces=[{tag = \"y_lower\", name = \"wall\"}]",
                "output.probes={mid = [0.25, 0.5]}"])
    build_problem(cfg)
    assert parse_quantities(cfg.output).keys(2, OUTPUTS) == \
        ["wall_drag", "wall_lift", "mid_u", "mid_v", "mid_p"]


def channel_with_cylinder(r=0.05):
    from ddpinn.geometry import shape_from_spec

    return shape_from_spec({"type": "difference", "of": [
        {"type": "rectangle", "lower": [0.0, 0.0], "upper": [2.2, 0.41],
         "tags": {"x_lower": "inlet", "x_upper": "outlet", "y_lower": "wall",
                  "y_upper": "wall"}},
        {"type": "disk", "center": [0.2, 0.2], "radius": r, "tag": "cylinder"}]})


def test_gauss_on_the_cylinder_of_a_channel():
    """The shape's own boundary rule: p = -x around the hole gives F = (pi r^2, 0) to
    round-off (the midpoint rule on a circle is exact for a linear integrand), normals
    pointing into the body."""
    r = 0.05
    zero = lambda x: np.zeros(len(x))  # noqa: E731
    predict = flow_field(zero, zero, lambda x: -x[:, 0], lambda x: (zero(x),) * 2,
                         lambda x: (zero(x),) * 2)
    out = force(problem_of(channel_with_cylinder(r)), predict, scale=500.0, n=2000)
    assert out["body_drag"] == pytest.approx(500.0 * math.pi * r ** 2, rel=1e-10)
    assert abs(out["body_lift"]) < 1e-12


def test_the_boundary_rule_is_fixed_and_measures_the_piece():
    from ddpinn.quantities_of_interest.compute import boundary_rule

    shape = channel_with_cylinder()
    a = boundary_rule(shape, "cylinder", 500, np.random.default_rng(1))
    b = boundary_rule(shape, "cylinder", 500, np.random.default_rng(2))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[2].sum() == pytest.approx(2 * math.pi * 0.05, rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(a[0] - [0.2, 0.2], axis=1), 0.05)
    pts, normals, w = boundary_rule(shape, "wall", 2000, None)
    assert w.sum() == pytest.approx(2 * 2.2, rel=1e-3)
    assert set(np.round(normals[:, 1]).tolist()) == {-1.0, 1.0}


def test_couette_in_3d_on_a_box_face():
    """u = g z over the face z = 0 of [0, 2] x [0, 3] x [0, 1]: F = (nu g 6, 0, 0), named
    drag, lift and side."""
    g, nu = 0.7, 0.02
    box = Box((0.0, 0.0, 0.0), (2.0, 3.0, 1.0), ("x", "y", "z"))
    pde = SimpleNamespace(outputs=("u", "v", "w", "p"), n_out=4, params={"nu": nu},
                          name="ns")
    problem = SimpleNamespace(pde=pde, box=box, time_axis=None, shape=None)

    def predict(x):
        vals = np.zeros((len(x), 4 + 4 * 3))
        vals[:, 0] = g * x[:, 2]
        vals[:, 4 + 2] = g  # d u / d z
        return vals
    q = Quantities((ForceSpec("z_lower", "plate", 1.0, 500),))
    out = QuantityEvaluator(q, problem).values(predict)
    assert list(out) == ["plate_drag", "plate_lift", "plate_side"]
    assert out["plate_drag"] == pytest.approx(nu * g * 6.0, rel=1e-12)
    assert abs(out["plate_lift"]) < 1e-14 and abs(out["plate_side"]) < 1e-14

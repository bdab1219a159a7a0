"""Hard Dirichlet conditions (``hard = true`` in a ``[[boundary]]`` table): u = g + phi N.

The carrier distance of every piece type vanishes on the piece and is positive inside; the
constrained outputs meet the data on the hard tags whatever the weights (numbers,
expressions, the exact solution, several pieces with different values, the initial time);
the Taylor-mode derivatives of the product agree with autograd through the constrained
forward pass; carriers that cut the interior and values or surfaces without a closed form
are refused with one message naming the field.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.geometry.distance import carrier_distance
from ddpinn.geometry.spec import shape_from_spec
from ddpinn.io.config import ConfigError, from_dict
from ddpinn.nn import make_fields
from ddpinn.nn.distance_constraint import DistanceConstraint, DistanceFields
from ddpinn.problem import build_problem
from ddpinn.training.experts import make_experts

CASES = Path(__file__).resolve().parents[2] / "cases"
SQUARE = {"type": "rectangle", "lower": [0.0, 0.0], "upper": [1.0, 1.0]}
HOLED = {"type": "difference", "of": [SQUARE, {"type": "disk", "center": [0.5, 0.5],
                                               "radius": 0.2, "tag": "hole"}]}
L_SHAPE = {"type": "polygon", "tag": "outer", "vertices": [[0, 0], [1, 0], [1, 0.5],
                                                           [0.5, 0.5], [0.5, 1], [0, 1]]}
FACES = ["x_lower", "x_upper", "y_lower", "y_upper"]

SHAPES = {
    "rectangle": SQUARE,
    "triangle": {"type": "polygon", "vertices": [[0, 0], [1, 0], [0.2, 0.9]]},
    "disk": {"type": "disk", "center": [0.1, -0.2], "radius": 0.7},
    "ball": {"type": "ball", "center": [0.0, 0.3, 0.1], "radius": 0.5},
    "cylinder": {"type": "cylinder", "center": [0.0, 0.0, 0.0], "radius": 0.4,
                 "height": 1.5, "axis": "y"},
    "holed": HOLED,
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def case(shape, boundary, pde="poisson", grid=(2, 2), time=None, **extra):
    """A small case on ``shape``; the elliptic families with k = 1 (:func:`_targets`)."""
    out = {"case": {"name": "hard", "seed": 3, "dtype": "float64"},
           "domain": {"shape": shape, **({"time": time} if time else {})},
           "decomposition": {"grid": list(grid)},
           "pde": {"name": pde, **({"params": {"k": 1.0}} if pde != "heat" else {})},
           "boundary": boundary,
           "network": {"width": 8, "depth": 2},
           "points": {"interior": 16, "boundary": 8, "interface": 4},
           "stages": [{"optimizer": "adam", "steps": 2, "lr": 1e-3}]}
    out.update(extra)
    return from_dict(out)


def randomised(model, seed=0):
    """Weights and biases far from their initial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_carrier_distance_vanishes_on_its_piece_and_is_positive_inside(name):
    shape = shape_from_spec(SHAPES[name], "domain.shape")
    rng = np.random.default_rng(1)
    inside = shape.sample_interior(500, rng)
    deep = inside[-shape.sdf(inside) > 1e-6]
    assert len(shape.pieces()) >= 1
    for piece in shape.pieces():
        on, _ = piece.sample(200, rng)
        on = on[piece.accept(on, _)]
        assert len(on)
        phi_on = carrier_distance(piece, torch.as_tensor(on)).numpy()
        assert np.abs(phi_on).max() <= 1e-12, (name, type(piece).__name__)
        phi_in = carrier_distance(piece, torch.as_tensor(deep)).numpy()
        assert phi_in.min() > 0.0, (name, type(piece).__name__)


MIXED = [{"tags": ["x_lower", "y_lower"], "kind": "dirichlet", "values": "exact", "hard": True},
         {"tags": "x_upper", "kind": "dirichlet", "values": "x*y + 0.25", "hard": True},
         {"tags": "y_upper", "kind": "dirichlet", "values": 0.5, "hard": True},
         {"tags": "hole", "kind": "dirichlet", "values": "sin(pi*x) + y**2", "hard": True}]


def _targets(x, tags):
    """The values of MIXED at points x (..., 2) with boundary tags (...)."""
    X, Y = x[..., 0], x[..., 1]
    exact = torch.sin(np.pi * X) * torch.sin(np.pi * Y)
    rules = {"x_lower": exact, "y_lower": exact, "x_upper": X * Y + 0.25,
             "y_upper": torch.full_like(X, 0.5), "hole": torch.sin(np.pi * X) + Y ** 2}
    out = torch.empty_like(X)
    for tag, value in rules.items():
        out = torch.where(torch.as_tensor(tags == tag), value, out)
    return out


def _experts(cfg):
    problem = build_problem(cfg)
    model = make_experts(problem, list(range(problem.decomposition.n_subdomains)))
    return problem, randomised(model)


@pytest.mark.parametrize("bc", [MIXED, [dict(MIXED[0], tags=FACES + ["hole"])],
                                [dict(MIXED[3], tags=FACES + ["hole"])]],
                         ids=["mixed", "exact", "expression"])
def test_constrained_outputs_meet_the_values_whatever_the_weights(bc):
    problem, model = _experts(case(HOLED, bc))
    assert isinstance(model.output_transform, DistanceConstraint)
    pts, _, ids = problem.shape.sample_boundary(400, np.random.default_rng(2))
    x = torch.as_tensor(np.broadcast_to(pts, (model.n_experts,) + pts.shape).copy())
    tags = np.array(problem.shape.tags)[ids]
    u = model(x)[..., 0]
    want = _targets(x, tags) if len(bc) > 1 else \
        _targets(x, np.full(tags.shape, "x_lower" if bc[0]["values"] == "exact" else "hole"))
    assert (u - want).abs().max().item() <= 1e-12
    # corners, where two carriers meet: the value of either face (they agree there)
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    u = model(corners.expand(model.n_experts, -1, -1))[..., 0]
    assert torch.isfinite(u).all()
    if len(bc) == 1:
        want = _targets(corners, np.full(3, "x_lower" if bc[0]["values"] == "exact"
                                         else "hole"))
        assert (u - want).abs().max().item() <= 1e-12
    # inside, the networks are free: u differs from any of the values
    inner = torch.as_tensor(problem.shape.sample_interior(50, np.random.default_rng(3)))
    assert (model(inner.expand(model.n_experts, -1, -1))[..., 0]
            - _targets(inner, np.full(50, "hole"))).abs().min() > 1e-6


def test_initial_time_is_a_hard_tag():
    bc = [{"tags": ["x_lower", "x_upper", "initial"], "kind": "dirichlet", "values": "exact",
           "hard": True}]
    cfg = case({"type": "interval", "lower": [0.0], "upper": [1.0]}, bc, pde="heat",
               grid=(2, 2), time=[0.0, 0.5])
    problem, model = _experts(cfg)
    t0 = cfg.domain.time[0]
    rng = np.random.default_rng(4)
    x = torch.as_tensor(np.stack([rng.random(64), np.full(64, t0)], -1))
    x[:4, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    x[:4, 1] = torch.as_tensor(t0 + 0.5 * rng.random(4))  # the space faces, later times
    want = problem.pde.exact(x, problem.pde.params)[:, 0]
    u = model(x.expand(model.n_experts, -1, -1))[..., 0]
    assert (u - want).abs().max().item() <= 1e-12


def _close(a, b, what):
    assert (a - b).abs().max().item() <= 1e-10 * max(1.0, b.abs().max().item()), what


@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("bc", [MIXED, [dict(MIXED[0], tags=FACES + ["hole"])],
                                [dict(MIXED[3], tags=FACES + ["hole"])]],
                         ids=["mixed", "exact", "expression"])
def test_taylor_derivatives_of_the_product_match_autograd(bc, constant):
    problem, model = _experts(case(HOLED, bc, pde="helmholtz"))
    pts = problem.shape.sample_interior(24, np.random.default_rng(5))
    x = torch.as_tensor(np.broadcast_to(pts, (model.n_experts,) + pts.shape).copy())
    x.requires_grad_(True)
    axes, outs = problem.pde.axes, problem.pde.outputs
    got = make_fields(model, x, axes, outs, "taylor", constant_data=constant)
    ref = make_fields(model, x, axes, outs, "autograd")
    assert isinstance(got, DistanceFields)
    _close(got.u, ref.u, "u")
    for a in range(2):
        _close(got.d(0, a), ref.d(0, a), f"d{a}")
        _close(got.hess_row(0, a), ref.hess_row(0, a), f"hess_row{a}")
        for b in range(2):
            _close(got.d2(0, a, b), ref.d2(0, a, b), f"d2{a}{b}")
    _close(got.grad(0), ref.grad(0), "grad")
    _close(got.laplacian(0), ref.laplacian(0), "laplacian")
    res = problem.pde.residual(got, problem.pde.params)
    _close(res, problem.pde.residual(ref, problem.pde.params), "residual")
    # the parameter gradient of a loss of them all
    loss_got = (res ** 2).sum() + (got.laplacian(0) * got.d(0, 1)).sum()
    loss_ref = (problem.pde.residual(ref, problem.pde.params) ** 2).sum() + \
        (ref.laplacian(0) * ref.d(0, 1)).sum()
    g1 = torch.autograd.grad(loss_got, list(model.parameters()), retain_graph=True)
    g2 = torch.autograd.grad(loss_ref, list(model.parameters()), retain_graph=True)
    for p, q in zip(g1, g2):
        _close(p, q, "parameter gradient")
    if not constant:  # live data: grad_of sees phi's and g's x-dependence too
        _close(got.grad_of(got.laplacian(0)), ref.grad_of(ref.laplacian(0)), "grad_of")


def test_repeat_experts_is_a_fresh_copy():
    problem, model = _experts(case(HOLED, MIXED))
    t = model.output_transform
    x = torch.as_tensor(problem.shape.sample_interior(8, np.random.default_rng(6)))[None]
    t.cached(x)
    rep = t.repeat_experts(3)
    assert rep is not t and rep._cache == {} and t._cache
    net = torch.randn(3, 8, 1, dtype=torch.float64)
    assert torch.equal(rep.apply(x.expand(3, -1, -1), net), t.apply(x.expand(3, -1, -1), net))


def _message(*args, **kwargs):
    with pytest.raises(ConfigError) as err:
        build_problem(case(*args, **kwargs))
    return str(err.value)


def test_a_carrier_that_cuts_the_interior_is_refused():
    bc = [{"tags": "outer", "kind": "dirichlet", "values": "exact", "hard": True}]
    msg = _message(L_SHAPE, bc)
    assert "boundary[0].hard" in msg and "'outer'" in msg and "interior" in msg, msg
    # the same conditions soft are fine, and a convex polygon's lines stay outside
    build_problem(case(L_SHAPE, [dict(bc[0], hard=False)]))
    build_problem(case(SHAPES["triangle"], [dict(bc[0], tags="polygon")]))


def test_a_hole_in_a_disk_and_the_disk_are_valid_carriers():
    shape = {"type": "difference", "of": [{"type": "disk", "center": [0, 0], "radius": 1.0,
                                           "tag": "rim"},
                                          {"type": "disk", "center": [0.3, 0], "radius": 0.2,
                                           "tag": "hole"}]}
    build_problem(case(shape, [{"tags": ["rim", "hole"], "kind": "dirichlet",
                                "values": 0.0, "hard": True}]))


@pytest.mark.parametrize("table, words", [
    ({"tags": "x_lower", "kind": "neumann", "values": 0.0, "hard": True},
     ["boundary[0].hard", "'dirichlet'", "'neumann'"]),
    ({"tags": "x_lower", "kind": "dirichlet", "values": 0.0, "hard": 1},
     ["boundary[0].hard", "true or false"]),
    ({"tags": "x_lower", "kind": "dirichlet", "values": "numpy:hypot", "hard": True},
     ["boundary[0].hard", "'numpy:hypot'", "closed form"]),
])
def test_bad_hard_tables_name_the_field(table, words):
    msg = _message(SQUARE, [table])
    for w in words:
        assert w in msg, msg


def test_hard_on_a_triangle_surface_is_refused():
    shape = {"type": "stl", "file": str(CASES / "cube_cavity.stl"), "tag": "walls"}
    bc = [{"tags": "walls", "kind": "dirichlet", "values": 0.0, "hard": True}]
    msg = _message(shape, bc, grid=(1, 1, 1))
    assert "boundary[0].hard" in msg and "triangle" in msg and "'walls'" in msg, msg


def test_per_point_copies_of_a_hard_dirichlet_model_give_the_autograd_jacobian():
    """Gauss-Newton's per-point copies (repeat_experts) see the same u = g + phi N."""
    from test_gauss_newton import MPI_CASES, jacobian_and_autograd, small_solver

    s = small_solver(MPI_CASES / "hard_dirichlet.toml")
    assert isinstance(s.model.output_transform, DistanceConstraint)
    _, r, J, r_ref, row = jacobian_and_autograd(s)
    assert torch.allclose(r, r_ref.detach(), rtol=0, atol=1e-12)
    for m in np.linspace(0, r.shape[1] - 1, 10).astype(int):
        assert torch.allclose(J[:, m], row(m), rtol=1e-10, atol=1e-12)

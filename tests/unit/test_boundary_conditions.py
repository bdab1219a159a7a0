"""Boundary conditions: every kind vanishes on an exact solution with values "exact", values
given as expressions match numpy, and bad [[boundary]] tables get one message naming the
field."""
from __future__ import annotations

import math
import textwrap
import uuid

import numpy as np
import pytest
import torch

from ddpinn.boundary import (BOUNDARY_KINDS, apply_rows, condition_rows, needs_gradient,
                             parse_boundary)
from ddpinn.pdes import PDES

BOX_TAGS = {1: ("x_lower", "x_upper"), 2: ("x_lower", "x_upper", "y_lower", "y_upper")}


def face_points(pde, tag, n=32, seed=0):
    """Points and outward normals on one face of the PDE's default box (+ time)."""
    rng = np.random.default_rng(seed)
    lo, hi, time = type(pde).domain
    d = pde.space_dim
    lower = [lo[min(i, len(lo) - 1)] for i in range(d)] + ([time[0]] if time else [])
    upper = [hi[min(i, len(hi) - 1)] for i in range(d)] + ([time[1]] if time else [])
    lower, upper = np.array(lower), np.array(upper)
    x = lower + (upper - lower) * rng.random((n, len(lower)))
    normal = np.zeros_like(x)
    if tag == "initial":
        x[:, -1] = lower[-1]
        return x, normal
    axis, side = "xyz".index(tag[0]), tag.split("_")[1]
    x[:, axis] = lower[axis] if side == "lower" else upper[axis]
    normal[:, axis] = -1.0 if side == "lower" else 1.0
    return x, normal


def exact_and_grad(pde, x):
    """u* (n, m) and grad u* (n, m, d) by autograd on pde.exact."""
    xt = torch.tensor(x, requires_grad=True)
    u = pde.exact(xt, pde.params)
    grad = torch.stack([torch.autograd.grad(u[:, k].sum(), xt, retain_graph=True)[0]
                        for k in range(pde.n_out)], dim=1)
    return u.detach().numpy(), grad.detach().numpy()


def rows_for(pde, spec, tag, tags):
    cond, = parse_boundary([spec], pde, pde.axes, tags)
    x, normal = face_points(pde, tag)
    return cond, x, normal, condition_rows(cond, x, normal, pde, pde.params)


# -- every kind vanishes on the exact solution ----------------------------------------------
POISSON_SPECS = [
    {"kind": "dirichlet", "values": "exact"},
    {"kind": "neumann", "values": "exact"},
    {"kind": "robin", "values": "exact", "alpha": 2.0, "beta": 0.5},
]


@pytest.mark.parametrize("spec", POISSON_SPECS, ids=lambda s: s["kind"])
@pytest.mark.parametrize("tag", BOX_TAGS[2])
def test_poisson_kinds_vanish_on_exact(spec, tag):
    pde = PDES["poisson"](2, {"k": 1.5})  # k = 1.5: u* != 0 on the upper faces
    cond, x, normal, rows = rows_for(pde, {"tags": [tag], **spec}, tag, BOX_TAGS[2])
    u, grad = exact_and_grad(pde, x)
    assert np.abs(apply_rows(rows, u, grad)).max() < 1e-12
    # Independently: u* = sin(k pi x) sin(k pi y), du*/dn along the face's normal.
    k = 1.5 * math.pi
    s, c = np.sin(k * x), np.cos(k * x)
    value = s[:, 0] * s[:, 1]
    dn = k * (c[:, 0] * s[:, 1] * normal[:, 0] + s[:, 0] * c[:, 1] * normal[:, 1])
    want = {"dirichlet": value, "neumann": dn, "robin": 2.0 * value + 0.5 * dn}[spec["kind"]]
    np.testing.assert_allclose(rows.target[:, 0], want, rtol=0, atol=1e-12)
    assert rows.mask.shape == (32, 1) and np.all(rows.mask == 1.0)
    assert rows.A.shape == (32, 1, 1) and rows.direction.shape == (32, 2)
    # A perturbed field does not satisfy the rows.
    assert np.abs(apply_rows(rows, u + 0.1, grad + 0.1)).max() > 1e-3


@pytest.mark.parametrize("spec", POISSON_SPECS[1:], ids=lambda s: s["kind"])
@pytest.mark.parametrize("tag", BOX_TAGS[1])
def test_heat_flux_kinds_vanish_on_exact(spec, tag):
    pde = PDES["heat"](1, {"kappa": 0.3})
    cond, x, normal, rows = rows_for(pde, {"tags": tag, **spec}, tag, BOX_TAGS[1])
    u, grad = exact_and_grad(pde, x)
    assert np.abs(apply_rows(rows, u, grad)).max() < 1e-12
    decay = np.exp(-0.3 * math.pi ** 2 * x[:, 1])
    dn = math.pi * np.cos(math.pi * x[:, 0]) * decay * normal[:, 0]  # = -pi e^.. at both ends
    np.testing.assert_allclose(dn, -math.pi * decay, atol=1e-12)
    want = dn if spec["kind"] == "neumann" else 2.0 * u[:, 0] + 0.5 * dn
    np.testing.assert_allclose(rows.target[:, 0], want, rtol=0, atol=1e-12)
    assert np.all(rows.direction[:, 1] == 0.0)  # normals have no time component


@pytest.mark.parametrize("d", [1, 2])
def test_wave_initial_rate_vanishes_on_exact(d):
    pde = PDES["wave"](d, {"c": 0.8})
    rate = "sin(pi*x)" if d == 1 else "sin(pi*x)*sin(pi*y)"
    for values in ("exact", rate, {"u": rate}):
        cond, x, normal, rows = rows_for(pde, {"tags": "initial", "kind": "initial_rate",
                                               "values": values}, "initial", BOX_TAGS[d])
        u, grad = exact_and_grad(pde, x)
        assert np.abs(apply_rows(rows, u, grad)).max() < 1e-12, values
        np.testing.assert_array_equal(rows.direction, np.eye(d + 1)[[d] * len(x)])
        assert np.all(rows.A == 0) and np.all(rows.b == 1.0)
        np.testing.assert_allclose(rows.target[:, 0], np.prod(np.sin(math.pi * x[:, :d]), 1),
                                   atol=1e-13)
    # Torch tensors: the same rows in the loss.
    res = apply_rows(rows, torch.tensor(u), torch.tensor(grad))
    assert isinstance(res, torch.Tensor) and float(res.abs().max()) < 1e-12


def test_kovasznay_outflow_matches_do_nothing_traction():
    pde = PDES["kovasznay"](2)
    cond, x, normal, rows = rows_for(pde, {"tags": "x_upper", "kind": "outflow",
                                           "values": "exact"}, "x_upper", BOX_TAGS[2])
    assert cond.outputs == (0, 1)
    u, grad = exact_and_grad(pde, x)
    nu = pde.params["nu"]
    traction = nu * np.einsum("rkd,rd->rk", grad[:, :2], normal) - u[:, 2:3] * normal
    np.testing.assert_allclose(rows.target[:, :2], traction, rtol=0, atol=1e-12)
    assert np.abs(apply_rows(rows, u, grad)).max() < 1e-12
    np.testing.assert_array_equal(rows.mask[0], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(rows.A[0], [[0, 0, -1.0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(rows.b[0], [nu, nu, 0.0])
    # Default values: zero traction; a case's nu reaches b.
    cond, = parse_boundary([{"tags": "x_upper", "kind": "outflow"}], pde, pde.axes,
                           BOX_TAGS[2])
    rows = condition_rows(cond, x, normal, pde, {**pde.params, "nu": 0.5})
    assert np.all(rows.target == 0) and np.all(rows.b[:, :2] == 0.5)


def test_navier_stokes_3d_outflow_and_walls():
    pde = PDES["navier_stokes"](3)
    tags = ("inlet", "outlet", "wall")
    conds = parse_boundary([
        {"tags": "inlet", "kind": "dirichlet", "values": {"u": "16*y*z*(1-y)*(1-z)",
                                                          "v": 0, "w": 0}},
        {"tags": "wall", "kind": "dirichlet", "values": 0.0},
        {"tags": "outlet", "kind": "outflow", "values": {"w": 0.25}},
    ], pde, pde.axes, tags)
    assert [c.outputs for c in conds] == [(0, 1, 2), (0, 1, 2, 3), (0, 1, 2)]
    assert needs_gradient(conds) and not needs_gradient(conds[:2])
    x = np.random.default_rng(1).random((8, 3))
    normal = np.tile([0.0, 0.6, 0.8], (8, 1))
    rows = condition_rows(conds[2], x, normal, pde, pde.params)
    np.testing.assert_array_equal(rows.A[0, :3, 3], [0.0, -0.6, -0.8])
    np.testing.assert_array_equal(rows.target[0], [0.0, 0.0, 0.25, 0.0])
    rows = condition_rows(conds[0], x, normal, pde, pde.params)
    want = 16 * x[:, 1] * x[:, 2] * (1 - x[:, 1]) * (1 - x[:, 2])
    np.testing.assert_allclose(rows.target[:, 0], want, rtol=1e-14)
    np.testing.assert_array_equal(rows.mask[0], [1, 1, 1, 0])


# -- expressions ----------------------------------------------------------------------------
EXPRESSIONS = [
    ("4*0.3*y*(0.41-y)/0.41**2", lambda x, y, t, p: 4 * 0.3 * y * (0.41 - y) / 0.41 ** 2),
    ("kappa*exp(-t)*cos(pi*x) + E", lambda x, y, t, p: p["kappa"] * np.exp(-t)
     * np.cos(np.pi * x) + np.e),
    ("x^2 - sqrt(y + 1)/tanh(1 + t)", lambda x, y, t, p: x ** 2 - np.sqrt(y + 1)
     / np.tanh(1 + t)),
    ("max(x, y) - abs(x - 0.5) + heaviside(y - 0.5)", lambda x, y, t, p: np.maximum(x, y)
     - np.abs(x - 0.5) + (y > 0.5)),
    ("2*pi*k", lambda x, y, t, p: 2 * np.pi * p["k"] + 0 * x),
    ("3", lambda x, y, t, p: 3.0 + 0 * x),
]


@pytest.mark.parametrize("text,fn", EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_expression_values_match_numpy(text, fn):
    pde = PDES["heat"](2, {"kappa": 0.7, "k": 3.0})
    cond, = parse_boundary([{"tags": "x_lower", "kind": "dirichlet", "values": text}],
                           pde, pde.axes, BOX_TAGS[2])
    x = np.random.default_rng(2).random((50, 3))
    rows = condition_rows(cond, x, np.zeros_like(x), pde, pde.params)
    want = fn(x[:, 0], x[:, 1], x[:, 2], pde.params)
    np.testing.assert_allclose(rows.target[:, 0], want, rtol=1e-13, atol=1e-14)
    # Parameters come from the params given to condition_rows (a case's values).
    if "kappa" in text:
        rows = condition_rows(cond, x, np.zeros_like(x), pde,
                              {**pde.params, "kappa": torch.tensor([[2.0]])})
        np.testing.assert_allclose(rows.target[:, 0], fn(*x.T, {"kappa": 2.0}), rtol=1e-13)


@pytest.mark.parametrize("text,bad", [
    ("foo*x", "'foo'"), ("z + x", "'z'"), ("__import__('os')", "__import__"),
    ("x.__class__", "'.'"), ("[x][0]", "'['"), ("lambda: 1", "'lambda'"), ("1j*x", "1j"),
    ("sin(x", "not a valid expression"), ("x = 1", "'='"), ("", "empty"), ("1/0", "finite"),
    ("x < 1", "'<'"), ("open('f')", "'open'"), ("sin.__doc__", "'.'"),
])
def test_bad_expressions_are_rejected(text, bad):
    pde = PDES["poisson"](2)
    with pytest.raises(ValueError) as exc:
        parse_boundary([{"tags": "x_lower", "kind": "dirichlet", "values": {"u": text}}],
                       pde, pde.axes, BOX_TAGS[2])
    msg = str(exc.value)
    assert "boundary[0].values.u" in msg and bad in msg, msg
    if bad == "'foo'":
        for allowed in ("x, y", "pi", "sin", "k"):
            assert allowed in msg


def test_function_values(tmp_path, monkeypatch):
    module = f"ddpinn_test_bc_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import numpy as np
        def inflow(x, params):
            return params["k"] * x[:, 0] + x[:, 1] ** 2
        def wrong(x, params):
            return np.zeros((len(x), 2))
        not_callable = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    pde = PDES["poisson"](2)
    cond, = parse_boundary([{"tags": "x_lower", "kind": "dirichlet",
                             "values": f"{module}:inflow"}], pde, pde.axes, BOX_TAGS[2])
    x = np.random.default_rng(3).random((10, 2))
    rows = condition_rows(cond, x, np.zeros_like(x), pde, pde.params)
    np.testing.assert_allclose(rows.target[:, 0], 2.0 * x[:, 0] + x[:, 1] ** 2, rtol=1e-15)
    cond, = parse_boundary([{"tags": "x_lower", "kind": "dirichlet",
                             "values": f"{module}:wrong"}], pde, pde.axes, BOX_TAGS[2])
    with pytest.raises(ValueError, match=r"boundary\[0\].values.*shape"):
        condition_rows(cond, x, np.zeros_like(x), pde, pde.params)
    for attr, match in (("not_callable", "not a function"), ("missing", "cannot be imported")):
        with pytest.raises(ValueError, match=match):
            parse_boundary([{"tags": "x_lower", "kind": "dirichlet",
                             "values": f"{module}:{attr}"}], pde, pde.axes, BOX_TAGS[2])


# -- parse errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,spec,parts", [
    ("poisson", {"tags": "x_lower", "kind": "periodic", "values": 0},
     ["boundary[0].kind", "'periodic'"] + list(BOUNDARY_KINDS)),
    ("poisson", {"tags": ["x_lower", "inlet"], "kind": "dirichlet", "values": 0},
     ["boundary[0].tags", "'inlet'", "x_lower, x_upper, y_lower, y_upper"]),
    ("poisson", {"tags": [], "kind": "dirichlet", "values": 0}, ["boundary[0].tags"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": {"p": 1.0}},
     ["boundary[0].values.p", "'p'", "outputs: u"]),
    ("kovasznay", {"tags": "x_upper", "kind": "outflow", "values": {"p": 0.0}},
     ["boundary[0].values.p", "u, v only"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet"}, ["boundary[0].values", "required"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": {}}, ["boundary[0].values"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": [1.0]},
     ["boundary[0].values", "must be a number"]),
    ("poisson", {"tags": "x_lower", "kind": "robin", "values": 0, "alpha": 1.0},
     ["boundary[0].beta", "required"]),
    ("poisson", {"tags": "x_lower", "kind": "robin", "values": 0, "alpha": 0, "beta": 0},
     ["boundary[0].alpha", "both 0"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": 0, "beta": 1.0},
     ["boundary[0].beta", "robin"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": 0, "weight": -1.0},
     ["boundary[0].weight", ">= 0"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": 0, "wieght": 1.0},
     ["boundary[0].wieght", "allowed: tags, kind, values, weight"]),
    ("poisson", {"kind": "dirichlet", "values": 0}, ["boundary[0].tags", "required"]),
    ("poisson", {"tags": "x_lower", "kind": "outflow"},
     ["boundary[0].kind", "'outflow'", "'nu'"]),
    ("poisson", {"tags": "x_lower", "kind": "initial_rate", "values": 0},
     ["boundary[0].kind", "time-dependent"]),
    ("wave", {"tags": ["initial", "x_lower"], "kind": "initial_rate", "values": 0},
     ["boundary[0].tags", "'initial' only"]),
    ("navier_stokes", {"tags": "x_lower", "kind": "dirichlet", "values": "exact"},
     ["boundary[0].values", "no exact solution"]),
    ("poisson", {"tags": "x_lower", "kind": "dirichlet", "values": float("nan")},
     ["boundary[0].values", "finite"]),
])
def test_parse_errors_name_the_field(name, spec, parts):
    pde = PDES[name](2 if 2 in PDES[name].space_dims else PDES[name].space_dims[0])
    specs = [{"tags": "x_upper", "kind": "dirichlet", "values": 0.0}, spec]
    with pytest.raises(ValueError) as exc:
        parse_boundary(specs, pde, pde.axes, BOX_TAGS[pde.space_dim])
    msg = str(exc.value).replace("boundary[1]", "boundary[0]")
    for part in parts:
        assert part in msg, (part, msg)


def test_parsed_conditions():
    pde = PDES["heat"](1)
    conds = parse_boundary([
        {"tags": ["x_lower", "x_upper", "x_lower"], "kind": "robin", "alpha": 1, "beta": 0,
         "values": "exact", "weight": 10},
        {"tags": "initial", "kind": "dirichlet", "values": {"u": "sin(pi*x)"}},
    ], pde, pde.axes, BOX_TAGS[1])
    robin, init = conds
    assert robin.tags == ("x_lower", "x_upper") and robin.weight == 10.0
    assert (robin.alpha, robin.beta) == (1.0, 0.0) and init.tags == ("initial",)
    assert set(init.values) == {"u"} and init.outputs == (0,) and init.weight == 1.0
    assert not needs_gradient(conds)  # robin with beta = 0 is a Dirichlet condition
    assert needs_gradient(parse_boundary([{"tags": "x_lower", "kind": "neumann",
                                           "values": 0}], pde, pde.axes, BOX_TAGS[1]))
    with pytest.raises(ValueError, match="array of tables"):
        parse_boundary({"tags": "x_lower"}, pde, pde.axes, BOX_TAGS[1])


def test_non_finite_values_are_reported_with_the_point():
    pde = PDES["poisson"](2)
    cond, = parse_boundary([{"tags": "x_lower", "kind": "dirichlet", "values": "log(x)"}],
                           pde, pde.axes, BOX_TAGS[2])
    x = np.array([[0.5, 0.5], [0.0, 0.25]])
    with pytest.raises(ValueError, match=r"boundary\[0\]\.values.*\[0\.0, 0\.25\]"):
        condition_rows(cond, x, np.zeros_like(x), pde, pde.params)

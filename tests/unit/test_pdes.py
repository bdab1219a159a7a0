"""PDE registry and families: exact solutions have ~zero residual, perturbations do not,
parameter and dimension checks, plugins named "package.module:ClassName"."""
from __future__ import annotations

import math
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.nn import Fields
from ddpinn.pdes import PDE, PDES, get_pde_class

EXPECTED_PDES = {"poisson", "helmholtz", "heat", "advection", "burgers", "allen_cahn",
                 "kovasznay", "beltrami", "wave", "navier_stokes"}

CASES = [(name, d) for name, cls in sorted(PDES.items()) for d in cls.space_dims]
EXACT_CASES = [(name, d) for name, d in CASES if PDES[name](d).has_exact]


def default_box(cls, d):
    """The family's default domain, in ``d`` space dimensions (+ time)."""
    lower, upper, time = cls.domain
    lower = list(lower) if len(lower) == d else [lower[0]] * d
    upper = list(upper) if len(upper) == d else [upper[0]] * d
    if time is not None:
        lower, upper = lower + [time[0]], upper + [time[1]]
    return (torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64))


def points(cls, d, seed=0):
    lo, hi = default_box(cls, d)
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(2, 64, len(lo), dtype=torch.float64, generator=g)
    return x.requires_grad_(True)


def test_registry_holds_the_shipped_families():
    assert EXPECTED_PDES <= set(PDES)
    for name, cls in PDES.items():
        assert issubclass(cls, PDE)
        assert cls.name == name
        assert cls.domain is not None, f"{name} has no default domain"
    assert len(EXACT_CASES) >= 10


@pytest.mark.parametrize("name,d", EXACT_CASES)
def test_exact_solution_has_zero_residual(name, d):
    pde = PDES[name](d)
    assert pde.has_exact
    x = points(type(pde), d)
    assert x.shape == (2, 64, d + int(pde.time_dependent))
    assert pde.axes[-1] == ("t" if pde.time_dependent else pde.axes[-1])
    u = pde.exact(x, pde.params)
    assert u.shape == (2, 64, pde.n_out)
    assert torch.isfinite(u).all()
    f = Fields(x, u, pde.axes, pde.outputs)
    r = pde.residual(f, pde.params)
    assert r.shape[:2] == (2, 64)
    # Scale of the terms: the largest second derivative / solution magnitude present.
    scale = 1.0 + float(u.detach().abs().max())
    for k in range(pde.n_out):
        scale = max(scale, float(f.grad(k).detach().abs().max()))
        for a in range(len(pde.axes)):
            scale = max(scale, float(f.d2(k, a, a).detach().abs().max()))
    assert float(r.detach().abs().max()) < 1e-8 * scale, (name, d, float(r.abs().max()))


@pytest.mark.parametrize("name,d", EXACT_CASES)
def test_perturbed_solution_has_nonzero_residual(name, d):
    pde = PDES[name](d)
    x = points(type(pde), d, seed=1)
    u = pde.exact(x, pde.params) + 0.1 * torch.sin(3 * x[..., :1])
    r = pde.residual(Fields(x, u, pde.axes, pde.outputs), pde.params)
    assert float(r.detach().abs().max()) > 1e-2, (name, d)


@pytest.mark.parametrize("name,d", EXACT_CASES)
def test_residual_depends_on_parameters(name, d):
    """Changing a parameter of an exact solution's PDE (but not the solution) shows up."""
    cls = PDES[name]
    pde = cls(d)
    x = points(cls, d, seed=2)
    u = pde.exact(x, pde.params)
    f = Fields(x, u, pde.axes, pde.outputs)
    effects = {}
    for key, value in pde.params.items():
        r = pde.residual(f, {**pde.params, key: 1.5 * value})
        effects[key] = float(r.detach().abs().max())
    assert max(effects.values()) > 1e-6, (name, d, effects)


@pytest.mark.parametrize("name", sorted(PDES))
def test_unknown_parameter_is_rejected(name):
    cls = PDES[name]
    with pytest.raises(ValueError) as exc:
        cls(cls.space_dims[0], {"bogus_param": 1.0})
    msg = str(exc.value)
    assert "pde.params.bogus_param" in msg
    for allowed in cls.defaults:
        assert allowed in msg


@pytest.mark.parametrize("name", sorted(PDES))
def test_known_parameter_overrides_default(name):
    cls = PDES[name]
    key = sorted(cls.defaults)[0]
    pde = cls(cls.space_dims[0], {key: 0.25})
    assert pde.params[key] == 0.25
    assert set(pde.params) == set(cls.defaults)
    # The class defaults are untouched by an instance's overrides.
    assert cls(cls.space_dims[0]).params[key] == cls.defaults[key]


@pytest.mark.parametrize("name", sorted(PDES))
def test_wrong_space_dimension_is_rejected(name):
    cls = PDES[name]
    bad = [d for d in (1, 2, 3, 4) if d not in cls.space_dims]
    for d in bad:
        with pytest.raises(ValueError, match="dimension"):
            cls(d)


def test_axes_and_outputs():
    assert PDES["heat"](2).axes == ("x", "y", "t")
    assert PDES["poisson"](3).axes == ("x", "y", "z")
    assert PDES["beltrami"](3).outputs == ("u", "v", "w", "p")
    assert PDES["kovasznay"](2).n_out == 3
    assert not PDES["burgers"](1).has_exact
    assert PDES["poisson"](1).has_exact


def test_unknown_pde_lists_known_ones():
    with pytest.raises(ValueError) as exc:
        get_pde_class("nope")
    msg = str(exc.value)
    assert "'nope'" in msg and "pde.name" in msg
    for name in EXPECTED_PDES:
        assert name in msg
    assert "package.module:ClassName" in msg


def test_registry_lookup():
    for name, cls in PDES.items():
        assert get_pde_class(name) is cls


def _write_plugin(tmp_path, monkeypatch, body):
    module = f"ddpinn_test_plugin_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


PLUGIN = """
    import torch
    from ddpinn.pdes import PDE

    class Decay(PDE):
        '''u' = -lam u on [0, 1]: u = exp(-lam x).'''
        name = "decay"
        space_dims = (1,)
        defaults = {"lam": 2.0}
        domain = ([0.0], [1.0], None)

        def residual(self, f, p):
            return (f.d(0, "x") + p["lam"] * f.value(0))[..., None]

        def exact(self, x, p):
            return torch.exp(-p["lam"] * x[..., :1])

    class NotAPDE:
        pass

    not_a_class = 3
"""


def test_plugin_pde_is_imported(tmp_path, monkeypatch):
    module = _write_plugin(tmp_path, monkeypatch, PLUGIN)
    cls = get_pde_class(f"{module}:Decay")
    assert issubclass(cls, PDE) and cls.__name__ == "Decay"
    assert "decay" not in PDES or PDES["decay"] is not cls  # importing does not register
    pde = cls(1, {"lam": 3.0})
    x = points(cls, 1)
    u = pde.exact(x, pde.params)
    r = pde.residual(Fields(x, u, pde.axes, pde.outputs), pde.params)
    assert float(r.detach().abs().max()) < 1e-12


@pytest.mark.parametrize("attr,match", [
    ("NotAPDE", "not a ddpinn.pdes.PDE subclass"),
    ("not_a_class", "not a ddpinn.pdes.PDE subclass"),
    ("Missing", "cannot be imported"),
])
def test_plugin_non_pde_is_rejected(tmp_path, monkeypatch, attr, match):
    module = _write_plugin(tmp_path, monkeypatch, PLUGIN)
    with pytest.raises(ValueError, match=match):
        get_pde_class(f"{module}:{attr}")


def test_plugin_missing_module_is_rejected():
    with pytest.raises(ValueError, match="cannot be imported"):
        get_pde_class("no_such_module_for_ddpinn_tests:Thing")


# -- Burgers: data only (no closed form) ---------------------------------------------------
def test_burgers_boundary_and_initial_data():
    pde = PDES["burgers"](1)
    xs = torch.linspace(-1.0, 1.0, 21, dtype=torch.float64)
    init = torch.stack([xs, torch.zeros_like(xs)], dim=-1)  # (x, t = 0)
    target, mask = pde.boundary_data(init, 1, -1, pde.params)
    assert target.shape == (21, 1) and mask == [True]
    torch.testing.assert_close(target[:, 0], -torch.sin(math.pi * xs), rtol=0, atol=1e-15)
    ts = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    for side, xv in ((-1, -1.0), (+1, 1.0)):
        pts = torch.stack([torch.full_like(ts, xv), ts], dim=-1)
        target, mask = pde.boundary_data(pts, 0, side, pde.params)
        assert target.shape == (11, 1) and mask == [True]
        assert torch.all(target == 0)
    assert pde.params["nu"] == pytest.approx(0.01 / math.pi)


def test_burgers_residual_of_a_known_field():
    """u = x t: u_t + u u_x - nu u_xx = x + x t^2."""
    pde = PDES["burgers"](1)
    x = points(type(pde), 1)
    u = (x[..., 0] * x[..., 1])[..., None]
    r = pde.residual(Fields(x, u, pde.axes, pde.outputs), pde.params)
    X, T = x[..., 0].detach(), x[..., 1].detach()
    torch.testing.assert_close(r[..., 0].detach(), X + X * T ** 2, rtol=1e-12, atol=1e-12)


def test_boundary_data_masks():
    kov = PDES["kovasznay"](2)
    x = points(type(kov), 2)[0].detach()
    assert kov.boundary_data(x, 0, +1, kov.params)[1] == [True, True, True]
    assert kov.boundary_data(x, 1, -1, kov.params)[1] == [True, True, False]
    bel = PDES["beltrami"](3)
    xb = points(type(bel), 3)[0].detach()
    target, mask = bel.boundary_data(xb, 3, -1, bel.params)
    assert mask == [True, True, True, False] and target.shape == (64, 4)


@pytest.mark.parametrize("name,d", CASES)
def test_flux_shape(name, d):
    pde = PDES[name](d)
    x = points(type(pde), d)
    u = torch.sin(x.sum(-1, keepdim=True) + torch.arange(pde.n_out, dtype=x.dtype))
    flux = pde.flux(Fields(x, u, pde.axes, pde.outputs), pde.params)
    assert flux.shape == (2, 64, pde.n_out, len(pde.axes))


@pytest.mark.parametrize("name", ["kovasznay", "beltrami"])
def test_pressure_poisson_residual(name):
    """``ppe`` > 0 adds the pressure Poisson equation as a last residual: zero on the exact
    flow, non-zero once the pressure alone is perturbed (momentum and continuity aside)."""
    d = PDES[name].space_dims[0]
    plain, ppe = PDES[name](d), PDES[name](d, {"ppe": 2.0})
    x = points(type(plain), d)
    u = plain.exact(x, plain.params)
    r0 = plain.residual(Fields(x, u, plain.axes, plain.outputs), plain.params)
    r1 = ppe.residual(Fields(x, u, ppe.axes, ppe.outputs), ppe.params)
    assert r1.shape[-1] == r0.shape[-1] + 1
    assert torch.equal(r1[..., :-1], r0)
    assert float(r1[..., -1].detach().abs().max()) < 1e-8 * 100
    bump = torch.zeros_like(u)
    bump[..., d] = 0.1 * torch.sin(2 * x[..., 0]) * torch.cos(x[..., 1])
    r2 = ppe.residual(Fields(x, u + bump, ppe.axes, ppe.outputs), ppe.params)
    lap = -1.0 * torch.sin(2 * x[..., 0]) * torch.cos(x[..., 1])  # ppe * Laplace(bump)
    assert torch.allclose(r2[..., -1], lap, atol=1e-8)


# -- Wave: second order in time -------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2])
def test_wave_exact_solution_starts_moving(d):
    """u(0) = u_t(0) = prod sin(pi x_i): the initial rate is not zero, so the initial data
    alone (without u_t) would not fix the solution."""
    pde = PDES["wave"](d, {"c": 0.7})
    x = points(type(pde), d).detach()[0]
    x[:, -1] = 0.0
    x.requires_grad_(True)
    u = pde.exact(x, pde.params)
    u_t = torch.autograd.grad(u.sum(), x)[0][:, -1]
    base = torch.prod(torch.sin(math.pi * x[:, :-1]), dim=-1).detach()
    torch.testing.assert_close(u[:, 0].detach(), base, rtol=0, atol=1e-14)
    torch.testing.assert_close(u_t.detach(), base, rtol=0, atol=1e-13)
    assert float(base.abs().max()) > 0.1


def test_wave_residual_of_a_known_field():
    """u = x^2 t^3: u_tt - c^2 u_xx = 6 x^2 t - 2 c^2 t^3."""
    pde = PDES["wave"](1, {"c": 2.0})
    x = points(type(pde), 1)
    u = (x[..., 0] ** 2 * x[..., 1] ** 3)[..., None]
    r = pde.residual(Fields(x, u, pde.axes, pde.outputs), pde.params)
    X, T = x[..., 0].detach(), x[..., 1].detach()
    torch.testing.assert_close(r[..., 0].detach(), 6 * X ** 2 * T - 8 * T ** 3,
                               rtol=1e-12, atol=1e-12)


# -- Steady Navier-Stokes: no closed form ---------------------------------------------------
@pytest.mark.parametrize("d", [2, 3])
def test_navier_stokes_outputs_and_residual(d):
    pde = PDES["navier_stokes"](d)
    velocity = ("u", "v", "w")[:d]
    assert pde.outputs == velocity + ("p",) and pde.n_out == d + 1
    assert pde.error_groups == {"velocity": velocity}
    assert pde.gauge_outputs == () and not pde.has_exact and pde.params["nu"] == 1e-3
    assert pde.equation_names() == tuple(f"momentum_{a}" for a in "xyz"[:d]) + ("continuity",)
    # The Kovasznay flow is a steady Navier-Stokes flow: zero residual in 2D with its nu.
    if d == 2:
        kov = PDES["kovasznay"](2)
        ns = PDES["navier_stokes"](2, {"nu": kov.params["nu"]})
        x = points(type(kov), 2)
        u = kov.exact(x, kov.params)
        r = ns.residual(Fields(x, u, ns.axes, ns.outputs), ns.params)
        assert float(r.detach().abs().max()) < 1e-8 * 100
    # A linear shear flow u = (y, 0[, 0]), p = -x: momentum x = u_y v - 1 + ... = -1.
    x = points(type(pde), d)
    zero = torch.zeros_like(x[..., 0])
    u = torch.stack([x[..., 1]] + [zero] * (d - 1) + [-x[..., 0]], dim=-1)
    r = pde.residual(Fields(x, u, pde.axes, pde.outputs), pde.params).detach()
    torch.testing.assert_close(r[..., 0], torch.full_like(zero, -1.0), rtol=0, atol=1e-14)
    assert float(r[..., 1:].abs().max()) < 1e-14
    target, mask = pde.boundary_data(x[0].detach(), 0, -1, pde.params)
    assert mask == [False] * (d + 1) and target.shape == (64, d + 1)


def test_burgers_is_scored_against_cole_hopf():
    """The test grid of the burgers case holds the exact (Cole-Hopf) solution at the case's
    own nu: the initial data at t = 0, zero at x = +-1, and a different field at another nu;
    a domain other than [-1, 1] in x is refused (the transform's solution is not its)."""
    from ddpinn.io.config import ConfigError, load
    from ddpinn.problem import build_problem
    from ddpinn.references.burgers import burgers_cole_hopf
    from ddpinn.training.evaluate import make_test_grid

    case = Path(__file__).resolve().parents[2] / "cases" / "burgers1d.toml"
    grid = make_test_grid(build_problem(load(case)), [21, 11])
    assert grid.source.startswith("Cole-Hopf")
    x, t = grid.points[:, 0], grid.points[:, 1]
    want = burgers_cole_hopf(x, t, 0.01 / math.pi)
    np.testing.assert_allclose(grid.truth[:, 0], want, rtol=0, atol=1e-14)
    np.testing.assert_allclose(grid.truth[t == 0, 0], -np.sin(math.pi * x[t == 0]), atol=1e-15)
    assert np.abs(grid.truth[np.abs(x) == 1.0, 0]).max() < 1e-12
    other = make_test_grid(build_problem(load(case, ["pde.params.nu=0.05"])), [21, 11])
    assert np.abs(other.truth - grid.truth).max() > 1e-2
    with pytest.raises((ValueError, ConfigError), match="Cole-Hopf"):
        make_test_grid(build_problem(load(case, ["domain.upper=[0.5]"])), [21, 11])

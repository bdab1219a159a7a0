"""The public plugin API: every name docs/plugins.md lists imports from its documented module,
per-equation residual weights are checked with one clear message, a plugin's reference goes
through the documented hook (and a bad one is one clear error), loss terms are means that do
not depend on the decomposition, and a plugin is named by its own name."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.io.config import ConfigError, load
from ddpinn.parallel.comm import SerialComm
from ddpinn.parallel.errors import DDPINNError
from ddpinn.pdes import PDE, IncompressibleNS, Reference
from ddpinn.problem import build_problem
from ddpinn.training.evaluate import evaluate, make_test_grid
from ddpinn.training.solver import Solver

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"
CASES = ROOT / "cases"
KOVASZNAY = CASES / "kovasznay.toml"
POISSON = CASES / "poisson2d.toml"
SMALL = ["pde.params={}", "points.interior=20", "points.boundary=4", "points.interface=4",
         "network.width=4", "network.depth=1"]


def documented_imports():
    """(module, name) for every ``from ddpinn... import a, b`` line of the page's code."""
    text = DOC.read_text()
    out = []
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for module, names in re.findall(r"^from (ddpinn[\w.]*) import (.+)$", block, re.M):
            out += [(module, n.strip()) for n in names.split(",") if n.strip()]
    return out


def test_the_page_lists_the_plugin_names():
    pairs = documented_imports()
    listed = {n for _, n in pairs}
    for name in ("PDE", "register_pde", "IncompressibleNS", "Fields", "Reference", "condition",
                 "QUANTITIES", "DDPINNError", "ConfigError"):
        assert name in listed, name


@pytest.mark.parametrize("module,name", documented_imports())
def test_every_documented_name_imports_from_its_module(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
    assert name in getattr(importlib.import_module(module), "__all__", [name])


def test_every_pde_attribute_and_hook_is_documented():
    text = DOC.read_text()
    for member in ("outputs", "equations", "space_dims", "time_dependent", "defaults",
                   "domain", "reference", "gauge_outputs", "error_groups",
                   "energy_diagnostics", "periodic_space", "residual(", "exact(",
                   "boundary_data(", "flux(", "load_reference(", "computed_reference(",
                   "f.x", "f.value(c)", "f.d(c, a)", "f.laplacian"):
        assert f"`{member}" in text, member


# -- per-equation residual weights -------------------------------------------------------------
def kovasznay(*sets):
    return build_problem(load(KOVASZNAY, list(SMALL) + list(sets)))


def test_residual_weights_by_list_by_name_or_one_number():
    assert kovasznay().residual_weights is None
    assert kovasznay("loss.residual=2.0").residual_weights is None
    assert kovasznay("loss.residual=[1, 0.1, 10]").residual_weights == (1.0, 0.1, 10.0)
    named = kovasznay("loss.residual={momentum_y = 0.5, continuity = 10.0}")
    assert named.residual_weights == (1.0, 0.5, 10.0)
    ppe = kovasznay("pde.params.ppe=1.0", "loss.residual={ppe = 0.1}")
    assert ppe.residual_weights == (1.0, 1.0, 1.0, 0.1)


@pytest.mark.parametrize("value,match", [
    ("[1.0, 0.1]", r"field 'loss.residual' = \[1.0, 0.1\] has 2 weights, but PDE 'kovasznay' "
                   r"has 3 equations \(momentum_x, momentum_y, continuity\)"),
    ("{momentum_z = 1.0}", r"field 'loss.residual.momentum_z' names no equation of PDE "
                           r"'kovasznay'; it has 3 equations"),
    ("[1.0, \"a\", 1.0]", r"field 'loss.residual\[1\]' = 'a' must be a number"),
    ("[1.0, -1.0, 1.0]", r"field 'loss.residual\[1\]' = -1.0 must be >= 0"),
    ("[]", r"field 'loss.residual' = \[\] is empty"),
])
def test_bad_residual_weights_are_one_clear_config_error(value, match):
    with pytest.raises(ConfigError, match=match):
        kovasznay(f"loss.residual={value}")


def test_unnamed_equations_are_r0_r1():
    with pytest.raises(ConfigError, match=r"PDE 'poisson' has 1 equation \(r0\)"):
        build_problem(load(POISSON, SMALL + ["loss.residual=[1.0, 2.0]"]))
    assert build_problem(load(POISSON, SMALL + ["loss.residual={r0 = 3}"])).residual_weights \
        == (3.0,)


def test_per_equation_weights_weigh_each_equation():
    """Weights [a, b, c] give the objective of the three equations weighed by a, b, c."""
    def loss_of(weights):
        s = Solver(kovasznay("case.dtype=\"float64\"", f"loss.residual={weights}",
                             "loss.boundary=0.0", "interface.conditions=[\"solution_continuity\"]",
                             "interface.weights={solution_continuity = 0.0}"), SerialComm())
        return s.closure()[0]
    parts = [loss_of(w) for w in ("[1, 0, 0]", "[0, 1, 0]", "[0, 0, 1]")]
    assert loss_of("[2, 0.5, 10]") == pytest.approx(2 * parts[0] + 0.5 * parts[1]
                                                     + 10 * parts[2], rel=1e-12)
    assert loss_of("1.0") == pytest.approx(sum(parts), rel=1e-12)


# -- reference data --------------------------------------------------------------------------
class Plugin(PDE):
    """u = x + y on the unit square (Laplace), for reference tests."""

    defaults = {}
    space_dims = (2,)

    def residual(self, f, p):
        return f.laplacian(0)[..., None]

    def exact(self, x, p):
        return x.sum(-1, keepdim=True)


def plugin_problem(cls, *sets):
    cfg = load(POISSON, SMALL + [f'pde.name="{__name__}:{cls.__name__}"', *sets])
    return build_problem(cfg)


class MissingFile(Plugin):
    reference = "no_such_reference.csv"


class BadHook(Plugin):
    def load_reference(self):
        return {"not": "a Reference"}


class RaisingHook(Plugin):
    def load_reference(self):
        raise KeyError("solution_42")


def test_a_missing_reference_file_is_one_config_error_at_set_up(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPINN_DATA", str(tmp_path))
    with pytest.raises(ConfigError, match=r"reference 'no_such_reference.csv' of PDE "
                                          r"'.*:MissingFile' not found: no file .*"
                                          r"no_such_reference.csv"):
        plugin_problem(MissingFile)


@pytest.mark.parametrize("cls,match", [
    (BadHook, r"load_reference\(\) must return a ddpinn.io.reference.Reference or None, got "
              r"dict"),
    (RaisingHook, r"load_reference\(\) failed: KeyError: 'solution_42'"),
])
def test_a_bad_reference_hook_is_one_ddpinn_error(cls, match):
    with pytest.raises(DDPINNError, match=match):
        make_test_grid(plugin_problem(cls))


def write_csv(path, header, rows):
    path.write_text(header + "\n" + "\n".join(",".join(map(repr, r)) for r in rows) + "\n")


def test_a_csv_reference_of_scattered_points(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPINN_DATA", str(tmp_path))
    pts = np.random.default_rng(0).uniform(size=(30, 2))
    # columns in any order, an extra one ignored
    write_csv(tmp_path / "plugin.csv", "u,y,x,note",
              [(x + y + 0.5, y, x, 7.0) for x, y in pts.tolist()])

    class Scattered(Plugin):
        reference = "plugin.csv"

    globals()["Scattered"] = Scattered  # importable by name, as a case file names it
    problem = plugin_problem(Scattered)
    grid = make_test_grid(problem, [5, 5])
    assert grid.scattered.shape == (30, 2) and grid.truth.shape == (30, 1)
    assert grid.points.shape == (25, 2) and grid.grid_truth is None
    np.testing.assert_allclose(grid.scattered[:, 0], pts[:, 0])
    # the truth is u = x + y + 0.5; a network that is zero everywhere has relative error 1
    solver = Solver(problem, SerialComm())
    with torch.no_grad():
        for p in solver.model.parameters():
            p.zero_()
    pred, errors = evaluate(solver, grid)
    assert pred.shape == (25, 1) and errors["l2_u"] == pytest.approx(1.0)

    write_csv(tmp_path / "plugin.csv", "x,y", [(0.5, 0.5)])
    with pytest.raises(DDPINNError, match=r"plugin.csv.*has no column 'u'"):
        make_test_grid(problem)
    write_csv(tmp_path / "plugin.csv", "x,y,u", [(1.5, 0.5, 0.0)])
    with pytest.raises(DDPINNError, match=r"1 of 1 points lie outside the domain"):
        make_test_grid(problem)


def test_an_unknown_reference_format_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPINN_DATA", str(tmp_path))
    (tmp_path / "plugin.xlsx").write_text("x")

    class Excel(Plugin):
        reference = "plugin.xlsx"

    globals()["Excel"] = Excel
    with pytest.raises(ConfigError, match=r"reference 'plugin.xlsx' .* has no known format"):
        plugin_problem(Excel)


def test_a_grid_reference_returned_by_the_hook():
    class Grid(Plugin):
        def load_reference(self):
            axes = [np.linspace(0, 1, 3), np.linspace(0, 1, 4)]
            X, Y = np.meshgrid(*axes, indexing="ij")
            return Reference(axes, (X + Y)[..., None], "made by hand")

    globals()["Grid"] = Grid
    grid = make_test_grid(plugin_problem(Grid))
    assert grid.shape == (3, 4) and grid.source == "made by hand" and grid.scattered is None


# -- names, means ----------------------------------------------------------------------------
class MyFlow(IncompressibleNS):
    outputs = ("u", "v", "p")
    space_dims = (2,)
    defaults = {"nu": 0.1}


def test_plugin_names():
    assert MyFlow(2).name == f"{__name__}:MyFlow"
    assert MyFlow(2).equation_names() == ("momentum_x", "momentum_y", "continuity")

    from ddpinn.pdes.navier_stokes import Kovasznay

    class Sub(Kovasznay):
        pass

    assert Sub(2).name.endswith(":test_plugin_names.<locals>.Sub")
    assert Kovasznay(2).name == "kovasznay"


class Constant(PDE):
    """Residual 2 everywhere and boundary data 1: a zero network sees res 4 and bc 1."""

    defaults = {}
    space_dims = (2,)

    def residual(self, f, p):
        return (0.0 * f.value(0) + 2.0)[..., None]

    def exact(self, x, p):
        return torch.ones_like(x[..., :1])


@pytest.mark.parametrize("grid", ["[1, 1]", "[2, 2]", "[3, 1]"])
def test_loss_terms_are_means_independent_of_the_decomposition(grid):
    cfg = load(POISSON, SMALL + [f'pde.name="{__name__}:Constant"',
                                 f"decomposition.grid={grid}", "case.dtype=\"float64\"",
                                 "interface.conditions=[\"solution_continuity\"]",
                                 "interface.weights={}"])
    solver = Solver(build_problem(cfg), SerialComm())
    with torch.no_grad():
        for p in solver.model.parameters():
            p.zero_()
    loss, m = solver.closure()
    assert m["residual"] == pytest.approx(4.0, rel=1e-12)
    assert m["boundary"] == pytest.approx(1.0, rel=1e-12)
    assert m["if_solution_continuity"] == 0.0
    # the objective stays the sum over subdomains (every one has a boundary face here)
    n = solver.decomposition.n_subdomains
    assert loss == pytest.approx(n * (4.0 * cfg.loss.residual + cfg.loss.boundary), rel=1e-12)

"""The taylor_green PDE: residual of an exact Navier-Stokes flow, initial data, the computed
spectral reference, and the energy diagnostics of networks through Solver.predict."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.io.config import load
from ddpinn.nn import Fields
from ddpinn.parallel import SerialComm
from ddpinn.pdes import PDES
from ddpinn.problem import build_problem
from ddpinn.training.evaluate import make_test_grid
from ddpinn.training.flow_diagnostics import energy_diagnostics
from ddpinn.training.solver import Solver

ROOT = Path(__file__).resolve().parents[2]
NU = 0.05


def tgv2d(x, nu=NU):
    """z-independent Taylor-Green flow, an exact Navier-Stokes solution: (..., 4) -> (..., 4)."""
    X, Y, t = x[..., 0], x[..., 1], x[..., 3]
    decay = torch.exp(-2 * nu * t)
    u = torch.sin(X) * torch.cos(Y) * decay
    v = -torch.cos(X) * torch.sin(Y) * decay
    p = 0.25 * (torch.cos(2 * X) + torch.cos(2 * Y)) * decay ** 2
    return torch.stack([u, v, torch.zeros_like(u), p], dim=-1)


def test_residual_vanishes_on_an_exact_flow_only():
    pde = PDES["taylor_green"](3, {"nu": NU})
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 50, 4, dtype=torch.float64, generator=g) * 2 - 1) * math.pi
    x.requires_grad_(True)
    r = pde.residual(Fields(x, tgv2d(x), pde.axes, pde.outputs), pde.params)
    assert r.shape == (2, 50, 4) and float(r.detach().abs().max()) < 1e-12
    r = pde.residual(Fields(x, tgv2d(x), pde.axes, pde.outputs), {"nu": 2 * NU})
    assert float(r.detach().abs().max()) > 1e-2


def test_initial_data_and_periodic_faces():
    pde = PDES["taylor_green"](3)
    assert pde.params["nu"] == 0.01 and pde.energy_diagnostics and not pde.has_exact
    x = torch.tensor([[0.3, -1.2, 2.0, 0.0]], dtype=torch.float64)
    target, mask = pde.boundary_data(x, 3, -1, pde.params)
    X, Y, Z = 0.3, -1.2, 2.0
    expect = [math.sin(X) * math.cos(Y) * math.cos(Z), -math.cos(X) * math.sin(Y) * math.cos(Z), 0]
    np.testing.assert_allclose(target[0, :3].numpy(), expect, atol=1e-15)
    assert mask == [True, True, True, False]
    with pytest.raises(ValueError, match="domain.periodic"):
        pde.boundary_data(x, 0, -1, pde.params)


def test_computed_reference_on_a_test_grid(tmp_path):
    pde = PDES["taylor_green"](3, {"nu": 0.02})
    axes = [np.linspace(-math.pi, math.pi, 5)] * 3 + [np.array([0.0, 0.5])]
    cache = tmp_path / "reference.nc"
    values, source = pde.computed_reference(axes, pde.params, cache, resolution=16)
    assert values.shape == (5, 5, 5, 2, 4) and "16^3" in source and cache.is_file()
    X, Y, Z = np.meshgrid(*axes[:3], indexing="ij")
    np.testing.assert_allclose(values[..., 0, 0], np.sin(X) * np.cos(Y) * np.cos(Z), atol=1e-12)
    # The pressure of the initial state: (cos 2x + cos 2y)(cos 2z + 2) / 16, zero mean.
    p0 = (np.cos(2 * X) + np.cos(2 * Y)) * (np.cos(2 * Z) + 2) / 16
    np.testing.assert_allclose(values[..., 0, 3], p0, atol=1e-12)
    again, _ = pde.computed_reference(axes, pde.params, cache, resolution=16)  # from the cache
    np.testing.assert_array_equal(again, values)
    with pytest.raises(ValueError, match="output.reference_n"):
        pde.computed_reference(axes, pde.params, None, resolution=15)
    with pytest.raises(ValueError, match=r"\[-pi, pi\]\^3"):
        pde.computed_reference([np.linspace(0, 1, 3)] * 3 + [axes[3]], pde.params)


class ExactFlow(torch.nn.Module):
    """Stands in for the trained experts: every expert returns the exact 2D flow."""

    def forward(self, x):
        return tgv2d(x.double()).to(x.dtype)


def test_energy_diagnostics_of_an_exact_flow(tmp_path):
    cfg = load(ROOT / "cases" / "tgv3d_re100.toml",
               [f"pde.params.nu={NU}", "points.interior=8", "points.boundary=4",
                "points.interface=4", "case.dtype=\"float64\"", f'output.dir="{tmp_path}"'])
    solver = Solver(build_problem(cfg), SerialComm())
    solver.model = ExactFlow()
    times = np.array([0.0, 0.5, 2.0])
    d = energy_diagnostics(solver, times, 16)
    assert d["points_per_axis"] == 16
    energy = 0.25 * np.exp(-4 * NU * times)
    np.testing.assert_allclose(d["energy"], energy, rtol=1e-12)
    np.testing.assert_allclose(d["dissipation"], 4 * NU * energy, rtol=1e-10)
    np.testing.assert_allclose(d["two_nu_enstrophy"], 4 * NU * energy, rtol=1e-10)


def test_test_grid_uses_the_computed_reference(tmp_path):
    cfg = load(ROOT / "cases" / "tgv3d_re100.toml",
               ["output.reference_n=8", "output.grid=[3, 3, 3, 2]", f'output.dir="{tmp_path}"'])
    grid = make_test_grid(build_problem(cfg), cfg.output.grid, tmp_path / "ref.nc", SerialComm())
    assert grid.truth.shape == (54, 4) and grid.source.startswith("spectral 8^3")
    assert (tmp_path / "ref.nc").is_file()

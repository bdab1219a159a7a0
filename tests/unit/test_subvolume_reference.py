"""The subvolume of the spectral Taylor-Green solution: the Fourier series summed on any
grid equals the solver's own values, the derived fields are those of the closed form at
t = 0, and the file it writes is gridded data that [[data]] tables read."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np

from ddpinn.references.spectral import SpectralBox, grid_1d, taylor_green_velocity
from ddpinn.references.subvolume import evaluate_spectrum, subvolume_fields


def test_series_on_the_solver_grid_equals_the_inverse_fft():
    box = SpectralBox(12)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 12, 12, 12))
    uh = box.forward(u) * box.mask  # a dealiased field: no Nyquist modes
    x = grid_1d(12)
    assert np.allclose(evaluate_spectrum(box, uh, [x, x, x]), box.backward(uh), atol=1e-13)


def test_fields_at_t0_are_the_closed_form():
    box, nu = SpectralBox(16), 0.01
    uh = box.forward(taylor_green_velocity(16))
    pts = [np.linspace(0.1, 1.7, 5), np.linspace(-2.0, 0.3, 4), np.linspace(0.4, 0.9, 3)]
    f = subvolume_fields(box, uh, nu, pts, derived=True)
    X, Y, Z = np.meshgrid(*pts, indexing="ij")
    assert np.allclose(f["u"], np.sin(X) * np.cos(Y) * np.cos(Z), atol=1e-13)
    assert np.allclose(f["w"], 0.0, atol=1e-13)
    p = (np.cos(2 * X) + np.cos(2 * Y)) * (np.cos(2 * Z) + 2) / 16
    assert np.allclose(f["p"], p, atol=1e-13)
    omega = np.stack([-np.cos(X) * np.sin(Y) * np.sin(Z), -np.sin(X) * np.cos(Y) * np.sin(Z),
                      2 * np.sin(X) * np.sin(Y) * np.cos(Z)])
    assert np.allclose(f["vorticity_magnitude"], np.sqrt((omega ** 2).sum(0)), atol=1e-12)
    # S = grad u symmetric part: S_xx = cos x cos y cos z = -S_yy, S_xz = -sin x cos y sin z / 2,
    # S_yz = cos x sin y sin z / 2, S_xy = 0
    sxx = np.cos(X) * np.cos(Y) * np.cos(Z)
    sxz, syz = -np.sin(X) * np.cos(Y) * np.sin(Z) / 2, np.cos(X) * np.sin(Y) * np.sin(Z) / 2
    eps = 2 * nu * (2 * sxx ** 2 + 2 * sxz ** 2 + 2 * syz ** 2)
    assert np.allclose(f["dissipation_rate"], eps, atol=1e-12)


def test_cli_writes_gridded_data_the_data_reader_reads(tmp_path):
    from ddpinn.data import open_data

    out, ref = tmp_path / "sub.nc", tmp_path / "ref.nc"
    proc = subprocess.run(
        [sys.executable, "-m", "ddpinn.cli", "reference", "tgv-subvolume", "--n", "16",
         "--re", "100", "--lower", "0", "0", "0", "--side", str(math.pi / 2), "--window", "0",
         "0.5", "--dt", "0.25", "--points", "9", "--reference-points", "5", "--out", str(out),
         "--reference-out", str(ref)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    source = open_data(out, {"x": "x", "y": "y", "z": "z", "t": "t"}, {},
                       ("u", "v", "w", "p"))
    assert source.kind == "grid" and source.fields == ("u", "v", "w", "p")
    lower, upper = source.bounds()
    assert np.allclose(lower, [0, 0, 0, 0]) and np.allclose(upper, [math.pi / 2] * 3 + [0.5])
    block = source.read_box(lower, upper)
    # at t = 0 the data are the initial condition, at every node and between nodes
    x = np.array([[0.3, 0.7, 1.1, 0.0], [1.2, 0.2, 0.9, 0.0]])
    exact = np.sin(x[:, 0]) * np.cos(x[:, 1]) * np.cos(x[:, 2])
    assert np.allclose(block.values[..., 0, 0][::4, ::4, ::4],
                       np.sin(block.grid[0][::4, None, None]) * np.cos(block.grid[1][None, ::4, None])
                       * np.cos(block.grid[2][None, None, ::4]), atol=1e-12)
    assert np.abs(block.interpolate(x)[:, 0] - exact).max() < 0.05  # linear, h = pi / 16
    ref_source = open_data(ref, {"x": "x", "y": "y", "z": "z", "t": "t"},
                           {"u": "vorticity_magnitude"})
    assert ref_source.read_box(*ref_source.bounds()).values.shape == (5, 5, 5, 3, 1)


def test_flow_fields_of_the_networks_are_those_of_the_velocity_they_give():
    """|omega| and 2 nu S_ij S_ij from the experts' derivatives (flow_fields), with the
    Taylor-Green velocity standing in for trained experts."""
    from types import SimpleNamespace

    import torch

    from ddpinn.training.flow_diagnostics import flow_fields

    def velocity(x):  # (E, n, 4) -> (E, n, 4): u, v, w, p
        X, Y, Z = x[..., 0], x[..., 1], x[..., 2]
        u = torch.sin(X) * torch.cos(Y) * torch.cos(Z)
        v = -torch.cos(X) * torch.sin(Y) * torch.cos(Z)
        return torch.stack([u, v, 0 * u, 0 * u], dim=-1) * torch.exp(-x[..., 3:4])

    def predict(points, values=None, n_values=None):
        out = values(velocity, torch.as_tensor(points)[None])
        return out[0].numpy()

    nu = 0.01
    solver = SimpleNamespace(decomposition=SimpleNamespace(box=SimpleNamespace(dim=4)),
                             pde=SimpleNamespace(params={"nu": nu}), predict=predict)
    rng = np.random.default_rng(0)
    pts = rng.random((50, 4)) * 3
    got = flow_fields(solver, pts)
    X, Y, Z, T = pts.T
    decay = np.exp(-T)
    omega = decay * np.stack([-np.cos(X) * np.sin(Y) * np.sin(Z),
                              -np.sin(X) * np.cos(Y) * np.sin(Z),
                              2 * np.sin(X) * np.sin(Y) * np.cos(Z)])
    sxx = decay * np.cos(X) * np.cos(Y) * np.cos(Z)
    sxz = -decay * np.sin(X) * np.cos(Y) * np.sin(Z) / 2
    syz = decay * np.cos(X) * np.sin(Y) * np.sin(Z) / 2
    assert np.allclose(got["vorticity_magnitude"], np.sqrt((omega ** 2).sum(0)), atol=1e-12)
    assert np.allclose(got["dissipation_rate"],
                       2 * nu * (2 * sxx ** 2 + 2 * sxz ** 2 + 2 * syz ** 2), atol=1e-12)

"""Pseudo-spectral Navier-Stokes reference: exact 2D Taylor-Green decay, the 3D Taylor-Green
initial state, energy balance, NetCDF round trip, and the Re = 1600 gdiag reader."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpinn.io import reference as reference_data
from ddpinn.references import read_reference_netcdf, solve, taylor_green_reference
from ddpinn.references.gdiag import TGV_RE1600_GDIAG, read_gdiag
from ddpinn.references.spectral import SpectralBox, grid_1d, interpolate


def test_2d_taylor_green_decays_exactly():
    n, nu = 16, 0.1
    x = grid_1d(n)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    u0 = np.stack([np.sin(X) * np.cos(Y), -np.cos(X) * np.sin(Y), 0 * X])
    times = [0.0, 0.3, 1.0, 2.5]
    snaps = solve(u0, nu, times)
    for s in snaps:
        decay = math.exp(-2 * nu * s.time)
        assert np.abs(s.velocity - u0 * decay).max() < 1e-10
        assert abs(s.energy - 0.25 * decay ** 2) < 1e-12
        p = 0.25 * (np.cos(2 * X) + np.cos(2 * Y)) * decay ** 2
        assert np.abs(s.pressure - p).max() < 1e-10
    assert [s.time for s in snaps] == times


def test_3d_taylor_green_initial_state():
    ref = taylor_green_reference(16, 0.01, [0.0])
    assert ref.energy[0] == pytest.approx(0.125, rel=1e-13)
    assert ref.enstrophy[0] == pytest.approx(0.375, rel=1e-13)  # |k|^2 = 3 for every mode
    box = SpectralBox(16)
    div = (1j * box.k * box.forward(ref.velocity[0])).sum(0)
    assert np.abs(box.backward(div)).max() < 1e-12
    x, y, z = ref.grid()
    assert x[0] == -math.pi and x[1] - x[0] == pytest.approx(2 * math.pi / 16)


def test_dissipation_is_minus_dedt_and_two_nu_enstrophy():
    nu = 1 / 200
    times = np.linspace(0, 3, 61)
    ref = taylor_green_reference(32, nu, times, store_velocity=False)
    assert ref.velocity is None
    # Central differences of E(t) against -dE/dt of the solver and 2 nu enstrophy.
    central = -(ref.energy[2:] - ref.energy[:-2]) / (times[2:] - times[:-2])
    scale = ref.dissipation.max()
    assert np.abs(central - ref.dissipation[1:-1]).max() < 2e-3 * scale
    assert np.abs(ref.dissipation - 2 * nu * ref.enstrophy).max() < 1e-10 * scale
    assert np.all(np.diff(ref.energy) < 0)
    # The vortex stretches: enstrophy grows from 3/8, unlike the 2D flow.
    assert ref.enstrophy[-1] > 0.5


def test_interpolation_reproduces_trigonometric_fields():
    n = 12
    x = grid_1d(n)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    f = np.sin(X) * np.cos(2 * Y) * np.cos(Z) + 0.3 * np.sin(3 * Z)
    pts = [np.linspace(-math.pi, math.pi, 7), np.array([0.1, 2.0]), np.linspace(-1, 3, 5)]
    P = np.meshgrid(*pts, indexing="ij")
    exact = np.sin(P[0]) * np.cos(2 * P[1]) * np.cos(P[2]) + 0.3 * np.sin(3 * P[2])
    assert np.abs(interpolate(f, pts) - exact).max() < 1e-12


def test_netcdf_round_trip(tmp_path):
    ref = taylor_green_reference(8, 0.05, [0.0, 0.5])
    path = tmp_path / "tgv.nc"
    ref.write_netcdf(path)
    back = read_reference_netcdf(path)
    assert back.n == 8 and back.nu == 0.05
    for name in ("times", "energy", "dissipation", "enstrophy", "velocity", "pressure"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ref, name))
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="not a Taylor-Green reference"):
        (tmp_path / "other.nc").write_bytes(b"")
        import netCDF4
        netCDF4.Dataset(tmp_path / "other.nc", "w").close()
        read_reference_netcdf(tmp_path / "other.nc")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="n = 7"):
        taylor_green_reference(7, 0.01, [0.0])
    with pytest.raises(ValueError, match="nu"):
        taylor_green_reference(8, 0.0, [0.0])
    with pytest.raises(ValueError, match="nondecreasing"):
        taylor_green_reference(8, 0.01, [1.0, 0.5])


def test_gdiag_reader():
    if reference_data.find(TGV_RE1600_GDIAG) is None:
        pytest.skip(f"{TGV_RE1600_GDIAG} not in {reference_data.data_dir()} (set DDPINN_DATA)")
    g = read_gdiag()
    assert g.time[0] == 0.0 and g.energy[0] == pytest.approx(0.125)
    assert g.enstrophy[0] == pytest.approx(0.375)
    k = int(np.argmax(g.dissipation))
    assert g.dissipation[k] == pytest.approx(0.01286, rel=0.01) and 8.5 < g.time[k] < 9.5
    # The DNS itself satisfies -dE/dt = 2 nu enstrophy (nu = 1/1600).
    assert np.allclose(g.dissipation, 2 / 1600 * g.enstrophy, rtol=5e-3)


def test_gdiag_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPINN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="DDPINN_DATA"):
        read_gdiag()
    bad = tmp_path / TGV_RE1600_GDIAG
    bad.write_text("# header\n0.0 0.125 0.0004 0.375\n0.01 0.12 oops 0.37\n")
    with pytest.raises(ValueError, match=r":3: expected 4 numbers"):
        read_gdiag()


def test_reference_command_writes_a_readable_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "ref.nc"
    proc = subprocess.run([sys.executable, "-m", "ddpinn.cli", "reference", "tgv", "--n", "16",
                           "--re", "100", "--t-end", "0.5", "--dt-out", "0.25", "--out", str(out)],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "t = 0.5 / 0.5" in proc.stderr
    ref = read_reference_netcdf(out)
    assert ref.n == 16 and ref.nu == pytest.approx(0.01)
    np.testing.assert_allclose(ref.times, [0.0, 0.25, 0.5])
    assert ref.velocity.shape == (3, 3, 16, 16, 16)
    bad = subprocess.run([sys.executable, "-m", "ddpinn.cli", "reference", "tgv", "--re", "0",
                          "--out", str(tmp_path / "x.nc")], capture_output=True, text=True,
                         cwd=root)
    assert bad.returncode == 2 and "--re" in bad.stderr and not (tmp_path / "x.nc").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_message(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ref.nc"
    proc = subprocess.run([sys.executable, "-m", "ddpinn.cli", "reference", "tgv", "--n", "16",
                           "--device", "cuda", "--out", str(out)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and "no GPU" in proc.stderr and not out.exists()
    assert "Traceback" not in proc.stderr


"""A subvolume of the spectral Taylor-Green vortex, cut out as gridded data.

The solver (:mod:`ddpinn.references.spectral`) runs on the whole periodic box; at the times of
a window the Fourier series of u, v, w, p (and of the vorticity and the strain rate) is summed
exactly on a tensor grid of a box inside it, so the subvolume's grid may be finer than the
solver's (no interpolation error besides the series' own truncation). The result is a NetCDF
grid file that case files read as boundary, initial, observation or reference data
(``[[data]]``, :mod:`ddpinn.data`), with the whole box's E(t), -dE/dt and enstrophy beside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import netCDF4
import numpy as np
import torch

from ddpinn.io.atomic import atomic_output
from ddpinn.references.spectral import SpectralBox, solve, taylor_green_velocity

FIELDS = ("u", "v", "w", "p")
# Derived fields of the reference file: |omega| and the local dissipation rate 2 nu S_ij S_ij.
DERIVED = ("vorticity_magnitude", "dissipation_rate")


def evaluate_spectrum(box: SpectralBox, fh: torch.Tensor, points_1d: Sequence) -> np.ndarray:
    """Sum the Fourier series of real fields on a tensor grid.

    Parameters
    ----------
    box : SpectralBox
    fh : tensor, shape (..., n, n, n // 2 + 1), on the box's device
        ``rfftn`` spectra of real fields on the grid x_i = -pi + 2 pi i / n.
    points_1d : three 1D arrays (m_x,), (m_y,), (m_z,), any coordinates

    Returns
    -------
    ndarray, shape (..., m_x, m_y, m_z)
    """
    n = box.n
    kz = box.axis_k[2]
    # A real field is the real part of the half-spectrum sum with the kz > 0 modes doubled
    # (they stand for their conjugate partners); the Nyquist modes have no partner.
    weight = torch.where((kz == 0) | (kz == n // 2), 1.0, 2.0)
    out = fh
    for axis, (pts, kk) in enumerate(zip(points_1d, box.axis_k)):
        x = torch.as_tensor(np.asarray(pts, float) + math.pi, dtype=torch.float64,
                            device=box.device)
        phase = torch.exp(1j * torch.outer(x, kk))                          # (m, n_k)
        if axis < 2:
            phase[:, n // 2] = 0.0
        else:
            phase = phase * weight
        out = torch.movedim(torch.tensordot(out, phase, dims=([axis - 3], [1])), -1, axis - 3)
    return out.real.cpu().numpy() / n ** 3


def subvolume_fields(box: SpectralBox, uh: torch.Tensor, nu: float, points_1d: Sequence,
                     derived: bool = False) -> dict:
    """u, v, w, p (and optionally |omega| and 2 nu S_ij S_ij) on a tensor grid.

    Returns dict name -> ndarray (m_x, m_y, m_z).
    """
    out = dict(zip(FIELDS[:3], evaluate_spectrum(box, uh, points_1d)))
    out["p"] = evaluate_spectrum(box, box.pressure_hat(uh), points_1d)
    if derived:
        w = evaluate_spectrum(box, box.curl(uh), points_1d)
        out["vorticity_magnitude"] = np.sqrt((w ** 2).sum(0))
        grad = evaluate_spectrum(box, 1j * box.k[None] * uh[:, None], points_1d)  # (3, 3, ...)
        strain = 0.5 * (grad + grad.transpose(1, 0, *range(2, grad.ndim)))
        out["dissipation_rate"] = 2.0 * nu * (strain ** 2).sum((0, 1))
    return out


@dataclass
class SubvolumeGrid:
    """One tensor grid of the subvolume to record: ``points`` per side, derived fields or not."""

    points: int
    derived: bool = False
    axes: list = field(default_factory=list)       # x, y, z coordinates, each (points,)
    values: dict = field(default_factory=dict)     # name -> list over times of (mx, my, mz)


@dataclass
class Subvolume:
    """Fields of a subvolume at the window's times, and the whole box's diagnostics.

    lower, upper : (3,) the subvolume; times : (nt,) the window's times
    grids : list of SubvolumeGrid; diagnostics : dict name -> (nd,) over ``diag_times``
    """

    nu: float
    n: int
    lower: np.ndarray
    upper: np.ndarray
    times: np.ndarray
    grids: list
    diag_times: np.ndarray
    diagnostics: dict

    def write_netcdf(self, path, grid: SubvolumeGrid) -> None:
        """A CF-1.8 grid file: coordinates x, y, z, t; u, v, w, p (and the derived fields)
        on (t, x, y, z); E, -dE/dt and enstrophy of the whole box on ``t_diag``."""
        from ddpinn.io.netcdf import _write_axis, _write_globals

        with atomic_output(path) as tmp:
            with netCDF4.Dataset(tmp, "w", format="NETCDF4", clobber=False) as ds:
                _write_globals(ds, {
                    "title": "Taylor-Green vortex, subvolume of the pseudo-spectral solution",
                    "nu": float(self.nu), "n": int(self.n),
                    "subvolume_lower": self.lower.tolist(),
                    "subvolume_upper": self.upper.tolist(),
                    "domain": "[-pi, pi]^3 periodic; fields summed from the Fourier series"})
                for name, values in zip("xyz", grid.axes):
                    _write_axis(ds, name, values, "1")
                _write_axis(ds, "t", self.times, "1")
                for name, series in grid.values.items():
                    var = ds.createVariable(name, "f8", ("t", "x", "y", "z"), zlib=True,
                                            complevel=1, chunksizes=_chunks(grid.points))
                    var[:] = np.stack(series)
                    var.units = "1"
                ds.createDimension("t_diag", len(self.diag_times))
                var = ds.createVariable("t_diag", "f8", ("t_diag",))
                var[:] = self.diag_times
                for name, values in self.diagnostics.items():
                    var = ds.createVariable(name, "f8", ("t_diag",))
                    var[:] = values
                    var.long_name = f"{name} of the whole periodic box"


def _chunks(points: int) -> tuple:
    """Chunks of about 16^3 per time: a rank's hyperslab reads few bytes it does not need."""
    c = min(points, 17)
    return (1, c, c, c)


def taylor_green_subvolume(n: int, nu: float, lower, side: float, window, dt: float,
                           grids: Sequence[SubvolumeGrid], dt_diag: float = 0.1,
                           t_end: Optional[float] = None, cfl: float = 0.5,
                           progress: Optional[Callable[[float, int], None]] = None,
                           device="cpu") -> Subvolume:
    """Run the Taylor-Green vortex on an n^3 grid and record a cube of the flow.

    Parameters
    ----------
    lower : (3,) the cube's lower corner; side : its edge length (inside [-pi, pi]^3 or not:
        the flow is periodic)
    window : (t0, t1); dt : the interval of the recorded times in the window
    grids : the tensor grids to record (points per side, derived fields or not)
    dt_diag : interval of the whole-box diagnostics from 0 to ``t_end`` (default t1)
    device : where the solver runs ("cpu", "cuda", "auto"; :func:`solve`)
    """
    lower = np.asarray(lower, dtype=np.float64).reshape(3)
    upper = lower + float(side)
    t0, t1 = (float(v) for v in window)
    if not (side > 0 and 0 <= t0 < t1 and dt > 0 and dt_diag > 0):
        raise ValueError(f"need side > 0, 0 <= t0 < t1, dt > 0: got side {side}, "
                         f"window {window}, dt {dt}")
    times = np.linspace(t0, t1, int(round((t1 - t0) / dt)) + 1)
    t_end = max(t1, float(t_end or t1))
    diag_times = np.linspace(0.0, t_end, int(round(t_end / dt_diag)) + 1)
    out_times = np.unique(np.round(np.concatenate([times, diag_times]), 12))
    recorded = set(np.round(times, 12).tolist())
    for g in grids:
        g.axes = [np.linspace(lo, hi, g.points) for lo, hi in zip(lower, upper)]
        g.values = {}

    def record(t, box, uh):
        if round(t, 12) not in recorded:
            return
        for g in grids:
            for name, values in subvolume_fields(box, uh, nu, g.axes, g.derived).items():
                g.values.setdefault(name, []).append(values)

    snaps = solve(taylor_green_velocity(n), nu, out_times, cfl=cfl, store_velocity=False,
                  progress=progress, on_output=record, device=device)
    at_diag = np.isin(np.round(out_times, 12), np.round(diag_times, 12))
    diagnostics = {name: np.array([getattr(s, name) for s, keep in zip(snaps, at_diag) if keep])
                   for name in ("energy", "dissipation", "enstrophy")}
    return Subvolume(float(nu), int(n), lower, upper, times, list(grids),
                     out_times[at_diag], diagnostics)

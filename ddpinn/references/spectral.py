"""Pseudo-spectral incompressible Navier-Stokes in the periodic box [-pi, pi]^3.

Fourier-Galerkin in space (real FFTs, 2/3-rule dealiasing, projection onto divergence-free
fields), fourth-order Runge-Kutta in time with an integrating factor for the viscous term
(so viscous decay is exact and only the nonlinear term limits the step). Grid points are
x_i = -pi + 2 pi i / n, i = 0..n-1, the same along every axis.

The solver works on torch tensors in float64 / complex128, on the CPU or a GPU
(``device``): a 256^3 run through the Taylor-Green dissipation peak takes hours on a few
CPU cores and about a minute on one GPU.

The main use is the reference of the 3D Taylor-Green vortex (:func:`taylor_green_reference`),
computed once and cached as NetCDF (:meth:`TGVReference.write_netcdf`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import netCDF4
import numpy as np
import torch

from ddpinn.io.atomic import atomic_output


def solver_device(requested="cpu") -> torch.device:
    """The device of a spectral run: "cpu", "cuda" (an error without a GPU) or "auto"."""
    requested = str(requested)
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no GPU is visible")
    return torch.device(requested)


# ------------------------------------------------------------------------------- the solver

class SpectralBox:
    """Wavenumbers, dealiasing mask and the operators of an n^3 periodic box.

    Spectral tensors have the shape of ``torch.fft.rfftn`` output, (..., n, n, n // 2 + 1),
    complex128 on ``device``; grid tensors are float64 (..., n, n, n). Methods take and
    return tensors on ``device`` (:meth:`forward` also takes numpy arrays).
    """

    def __init__(self, n: int, device="cpu"):
        if not (isinstance(n, (int, np.integer)) and n >= 4 and n % 2 == 0):
            raise ValueError(f"spectral grid n = {n!r} must be an even integer >= 4")
        self.n = int(n)
        self.device = solver_device(device)
        f64 = dict(dtype=torch.float64, device=self.device)
        # wavenumbers along each axis: (n,) for x and y, (n//2+1,) for z (the real FFT's)
        self.axis_k = (torch.fft.fftfreq(n, 1.0 / n, **f64),) * 2 + \
            (torch.fft.rfftfreq(n, 1.0 / n, **f64),)
        self.k = torch.stack(torch.meshgrid(*self.axis_k, indexing="ij"))  # (3, n, n, n//2+1)
        self.k2 = (self.k ** 2).sum(0)
        self.k2_safe = torch.where(self.k2 == 0, torch.ones_like(self.k2), self.k2)
        # 2/3 rule: quadratic products of the kept modes alias only onto dropped modes.
        self.mask = torch.all(self.k.abs() < n / 3.0, dim=0).to(torch.float64)

    def tensor(self, u) -> torch.Tensor:
        """``u`` (array or tensor) as a float64 tensor on the box's device."""
        return torch.as_tensor(u, dtype=torch.float64, device=self.device)

    def forward(self, u) -> torch.Tensor:
        return torch.fft.rfftn(self.tensor(u), dim=(-3, -2, -1))

    def backward(self, uh: torch.Tensor) -> torch.Tensor:
        n = self.n
        return torch.fft.irfftn(uh, s=(n, n, n), dim=(-3, -2, -1))

    def project(self, vh: torch.Tensor) -> torch.Tensor:
        """Leray projection onto divergence-free fields: v - k (k . v) / |k|^2."""
        return vh - self.k * (self.k * vh).sum(0) / self.k2_safe

    def curl(self, uh: torch.Tensor) -> torch.Tensor:
        k = self.k
        return 1j * torch.stack([k[1] * uh[2] - k[2] * uh[1],
                                 k[2] * uh[0] - k[0] * uh[2],
                                 k[0] * uh[1] - k[1] * uh[0]])

    def nonlinear(self, uh: torch.Tensor):
        """Projected, dealiased u x omega (rotational form; the pressure absorbs |u|^2 / 2).

        Returns (N_hat (3, n, n, n//2+1), u (3, n, n, n)).
        """
        u = self.backward(uh)
        w = self.backward(self.curl(uh))
        cross = torch.stack([u[1] * w[2] - u[2] * w[1],
                             u[2] * w[0] - u[0] * w[2],
                             u[0] * w[1] - u[1] * w[0]])
        return self.project(self.forward(cross) * self.mask), u

    def pressure(self, uh: torch.Tensor) -> torch.Tensor:
        """Pressure (zero mean) of the velocity uh: solves Laplace(p) = -d_i d_j (u_i u_j).

        Returns p (n, n, n).
        """
        return self.backward(self.pressure_hat(uh))

    def pressure_hat(self, uh: torch.Tensor) -> torch.Tensor:
        """Spectrum of :meth:`pressure`, (n, n, n//2+1)."""
        u = self.backward(uh)
        k = self.k
        rhs = 0
        for i in range(3):
            for j in range(i, 3):
                # u_i u_j is symmetric in (i, j): the off-diagonal pairs count twice.
                rhs = rhs + (1 if i == j else 2) * k[i] * k[j] * self.forward(u[i] * u[j])
        ph = -rhs * self.mask / self.k2_safe
        ph[0, 0, 0] = 0.0
        return ph


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


@dataclass
class Snapshot:
    """What :func:`solve` records at one output time (velocity (3, n, n, n) or None)."""

    time: float
    energy: float
    dissipation: float
    enstrophy: float
    velocity: Optional[np.ndarray]
    pressure: Optional[np.ndarray]


def _snapshot(box: SpectralBox, uh: torch.Tensor, nu: float, t: float,
              store: bool) -> Snapshot:
    nonlin, u = box.nonlinear(uh)
    dudt = box.backward(nonlin - nu * box.k2 * uh)
    w = box.backward(box.curl(uh))
    energy = 0.5 * float((u ** 2).sum(0).mean())
    # -dE/dt of the computed flow, from its full right-hand side (nonlinear term included).
    dissipation = -float((u * dudt).sum(0).mean())
    enstrophy = 0.5 * float((w ** 2).sum(0).mean())
    return Snapshot(t, energy, dissipation, enstrophy, _numpy(u) if store else None,
                    _numpy(box.pressure(uh)) if store else None)


def solve(u0: np.ndarray, nu: float, times: Sequence[float], cfl: float = 0.5,
          store_velocity: bool = True, t0: float = 0.0,
          progress: Optional[Callable[[float, int], None]] = None,
          on_output: Optional[Callable[[float, SpectralBox, torch.Tensor], None]] = None,
          device="cpu") -> list:
    """Integrate incompressible Navier-Stokes in [-pi, pi]^3 from ``u0`` at time ``t0``.

    Parameters
    ----------
    u0 : ndarray, shape (3, n, n, n)
        Initial velocity on the grid x_i = -pi + 2 pi i / n (axes x, y, z); it is dealiased
        and projected onto divergence-free fields first.
    nu : float
        Kinematic viscosity (> 0).
    times : sequence of float, nondecreasing, each >= t0
        Output times; the step is shortened to land on each exactly.
    cfl : float
        Step = cfl * (2 pi / n) / max(|u| + |v| + |w|).
    store_velocity : bool
        Keep velocity and pressure at the output times (else only the scalar diagnostics).
    progress : callable (t, steps), optional
        Called after every output time.
    on_output : callable (t, box, uh), optional
        Called at every output time with the velocity spectrum uh (3, n, n, n//2+1), a
        tensor on ``device``, e.g. to keep part of the field without storing all of it.
    device : "cpu", "cuda" or "auto"
        Where the fields live and the FFTs run (:func:`solver_device`).

    Returns
    -------
    list of :class:`Snapshot`, one per output time.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 4 or u0.shape[0] != 3 or len(set(u0.shape[1:])) != 1:
        raise ValueError(f"u0 must have shape (3, n, n, n), got {u0.shape}")
    if not nu > 0:
        raise ValueError(f"viscosity nu = {nu!r} must be > 0")
    if not cfl > 0:
        raise ValueError(f"cfl = {cfl!r} must be > 0")
    times = [float(t) for t in times]
    if any(b < a for a, b in zip(times, times[1:])) or (times and times[0] < t0):
        raise ValueError(f"output times must be nondecreasing and >= t0 = {t0}, got {times}")
    box = SpectralBox(u0.shape[1], device)
    uh = box.project(box.forward(u0) * box.mask)
    dx = 2 * math.pi / box.n
    t, steps, out = float(t0), 0, []
    for t_out in times:
        while t < t_out - 1e-12 * max(1.0, abs(t_out)):
            nonlin, u = box.nonlinear(uh)
            speed = float(u.abs().sum(0).max())
            h = min(cfl * dx / max(speed, 1e-12), t_out - t)
            uh = _rk4_step(box, uh, nonlin, nu, h)
            t += h
            steps += 1
        t = t_out
        out.append(_snapshot(box, uh, nu, t, store_velocity))
        if on_output is not None:
            on_output(t, box, uh)
        if progress is not None:
            progress(t, steps)
    return out


def _rk4_step(box: SpectralBox, uh, a, nu: float, h: float):
    """One integrating-factor RK4 (Lawson) step; ``a`` is the nonlinear term at uh."""
    e_half = torch.exp(-nu * box.k2 * h / 2)
    e_full = e_half ** 2
    b, _ = box.nonlinear(e_half * (uh + h / 2 * a))
    c, _ = box.nonlinear(e_half * uh + h / 2 * b)
    d, _ = box.nonlinear(e_full * uh + h * e_half * c)
    return e_full * uh + h / 6 * (e_full * a + 2 * e_half * (b + c) + d)


# ------------------------------------------------------------------------- Taylor-Green vortex

def grid_1d(n: int) -> np.ndarray:
    """The n grid coordinates -pi + 2 pi i / n along one axis."""
    return -math.pi + 2 * math.pi * np.arange(n) / n


def taylor_green_velocity(n: int) -> np.ndarray:
    """u = sin x cos y cos z, v = -cos x sin y cos z, w = 0 on the n^3 grid: (3, n, n, n)."""
    x = grid_1d(n)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    return np.stack([np.sin(X) * np.cos(Y) * np.cos(Z),
                     -np.cos(X) * np.sin(Y) * np.cos(Z),
                     np.zeros_like(X)])


@dataclass
class TGVReference:
    """Spectral solution of the Taylor-Green vortex at output times.

    Attributes
    ----------
    times : (nt,)
    energy : (nt,)       mean of |u|^2 / 2
    dissipation : (nt,)  -dE/dt
    enstrophy : (nt,)    mean of |omega|^2 / 2 (resolved flow: -dE/dt = 2 nu enstrophy)
    velocity : (nt, 3, n, n, n) or None
    pressure : (nt, n, n, n) or None, zero mean
    nu : float
    n : int
    """

    times: np.ndarray
    energy: np.ndarray
    dissipation: np.ndarray
    enstrophy: np.ndarray
    velocity: Optional[np.ndarray]
    nu: float
    n: int
    pressure: Optional[np.ndarray] = None

    def grid(self):
        """1D coordinates (x, y, z) of the grid, each (n,)."""
        x = grid_1d(self.n)
        return x, x.copy(), x.copy()

    def write_netcdf(self, path) -> None:
        """Write a CF-1.8 NetCDF4 file atomically (velocity and pressure when stored)."""
        from ddpinn.io.netcdf import _write_axis, _write_globals

        with atomic_output(path) as tmp:
            with netCDF4.Dataset(tmp, "w", format="NETCDF4", clobber=False) as ds:
                _write_globals(ds, {"title": "Taylor-Green vortex, pseudo-spectral reference",
                                    "nu": float(self.nu), "n": int(self.n),
                                    "domain": "[-pi, pi]^3, x_i = -pi + 2 pi i / n"})
                _write_axis(ds, "t", np.asarray(self.times, float), "1")
                for name, values in zip("xyz", self.grid()):
                    _write_axis(ds, name, values, "1")
                for name, data, long in (
                        ("energy", self.energy, "mean kinetic energy, mean of |u|^2 / 2"),
                        ("dissipation", self.dissipation, "dissipation rate -dE/dt"),
                        ("enstrophy", self.enstrophy, "enstrophy, mean of |omega|^2 / 2")):
                    var = ds.createVariable(name, "f8", ("t",))
                    var[:] = data
                    var.units, var.long_name = "1", long
                fields = []
                if self.velocity is not None:
                    fields += [(c, self.velocity[:, i]) for i, c in enumerate("uvw")]
                if self.pressure is not None:
                    fields.append(("p", self.pressure))
                for name, data in fields:
                    var = ds.createVariable(name, "f8", ("t", "x", "y", "z"), zlib=True,
                                            complevel=1)
                    var[:] = data
                    var.units, var.long_name = "1", f"{name} of the spectral reference"


def read_reference_netcdf(path) -> TGVReference:
    """Read a file written by :meth:`TGVReference.write_netcdf`."""
    with netCDF4.Dataset(os.fspath(path), "r") as ds:
        ds.set_auto_mask(False)
        missing = [v for v in ("t", "energy", "dissipation", "enstrophy")
                   if v not in ds.variables]
        if missing or "nu" not in ds.ncattrs() or "n" not in ds.ncattrs():
            raise ValueError(f"{path}: not a Taylor-Green reference file (missing "
                             f"{', '.join(missing) or 'attributes nu, n'})")
        velocity = pressure = None
        if all(c in ds.variables for c in "uvw"):
            velocity = np.stack([np.asarray(ds.variables[c][:]) for c in "uvw"], axis=1)
        if "p" in ds.variables:
            pressure = np.asarray(ds.variables["p"][:])
        return TGVReference(np.asarray(ds.variables["t"][:]),
                            np.asarray(ds.variables["energy"][:]),
                            np.asarray(ds.variables["dissipation"][:]),
                            np.asarray(ds.variables["enstrophy"][:]),
                            velocity, float(ds.getncattr("nu")), int(ds.getncattr("n")),
                            pressure)


def taylor_green_reference(n: int, nu: float, times, cfl: float = 0.5,
                           store_velocity: bool = True,
                           progress: Optional[Callable[[float, int], None]] = None,
                           device="cpu") -> TGVReference:
    """The 3D Taylor-Green vortex (E(0) = 1/8) on an n^3 grid at the output ``times``.

    See :func:`solve` for the parameters.
    """
    snaps = solve(taylor_green_velocity(n), nu, times, cfl=cfl,
                  store_velocity=store_velocity, progress=progress, device=device)

    def col(attr):
        return np.array([getattr(s, attr) for s in snaps])

    velocity = np.stack([s.velocity for s in snaps]) if store_velocity and snaps else None
    pressure = np.stack([s.pressure for s in snaps]) if store_velocity and snaps else None
    return TGVReference(col("time"), col("energy"), col("dissipation"), col("enstrophy"),
                        velocity, float(nu), int(n), pressure)


def interpolate(values: np.ndarray, points_1d: Sequence[np.ndarray]) -> np.ndarray:
    """Trigonometric interpolation of periodic grid values onto a tensor grid.

    Parameters
    ----------
    values : (..., n, n, n) on the grid x_i = -pi + 2 pi i / n
    points_1d : three 1D arrays (m_x,), (m_y,), (m_z,), any coordinates

    Returns
    -------
    ndarray (..., m_x, m_y, m_z)
    """
    n = values.shape[-1]
    vh = np.fft.fftn(values, axes=(-3, -2, -1)) / n ** 3
    k = np.fft.fftfreq(n, 1.0 / n)
    out = vh
    for axis, pts in zip((-3, -2, -1), points_1d):
        phase = np.exp(1j * np.outer(np.asarray(pts, float) + math.pi, k))   # (m, n)
        phase[:, n // 2] = 0.0  # Nyquist: no unique interpolant (and zero after dealiasing)
        out = np.moveaxis(np.tensordot(out, phase, axes=([axis], [1])), -1, axis)
    return out.real


def cached_taylor_green(n: int, nu: float, times, cache=None) -> TGVReference:
    """:func:`taylor_green_reference` with velocity, read from ``cache`` when that file holds
    the same n, nu and times, else computed and written there (when ``cache`` is given)."""
    times = np.asarray(times, dtype=np.float64)
    if cache is not None and os.path.isfile(cache):
        try:
            ref = read_reference_netcdf(cache)
        except (OSError, ValueError):
            ref = None  # unreadable: compute again and replace it
        if ref is not None and ref.n == n and ref.nu == nu and ref.velocity is not None \
                and ref.pressure is not None and ref.times.shape == times.shape \
                and np.allclose(ref.times, times, rtol=0, atol=1e-12):
            return ref
    ref = taylor_green_reference(n, nu, times)
    if cache is not None:
        ref.write_netcdf(cache)
    return ref

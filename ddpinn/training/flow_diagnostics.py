"""Energy diagnostics of trained experts for flows in a periodic box (Taylor-Green vortex).

At each output time the experts are evaluated on a uniform periodic m^3 grid; the spatial
means over that grid are the quadratures (spectrally accurate for smooth periodic fields):

    E(t)            = mean of |u|^2 / 2
    -dE/dt          = -mean of u . du/dt        (time derivative of the networks)
    2 nu enstrophy  = 2 nu mean of |omega|^2 / 2 (vorticity from the networks' derivatives)

For a flow that solves Navier-Stokes the last two agree; their gap measures how far the
networks are from an energy-consistent solution.
"""
from __future__ import annotations

import numpy as np
import torch

MAX_POINTS_PER_AXIS = 32  # m, unless the case's output.reference_n is smaller


def _velocity_jet(model, x):
    """Velocity and its first derivatives along every axis: (E, n, d) -> (E, n, 3 + 3 d)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        vel = model(x)[..., :3]
        grads = [torch.autograd.grad(vel[..., c].sum(), x, retain_graph=c < 2)[0]
                 for c in range(3)]
    return torch.cat([vel] + grads, dim=-1).detach()


def diagnostics_grid(box, times, m: int):
    """Periodic grid points x_i = lower + width i / m per space axis, at each time.

    Returns points (nt * m^3, 4), columns x, y, z, t, in (t, x, y, z) C order.
    """
    axes = [box.lower[a] + box.width[a] * np.arange(m) / m for a in range(3)]
    T, X, Y, Z = np.meshgrid(np.asarray(times, float), *axes, indexing="ij")
    return np.stack([X.ravel(), Y.ravel(), Z.ravel(), T.ravel()], axis=-1)


def energy_diagnostics(solver, times, m: int = 0) -> dict | None:
    """Collective. E(t), -dE/dt and 2 nu enstrophy of the experts at ``times``, on an
    m^3 grid (0: ``MAX_POINTS_PER_AXIS``).

    Returns
    -------
    dict on rank 0 (None elsewhere): "t", "energy", "dissipation", "two_nu_enstrophy",
    each (nt,), and "points_per_axis" (m).
    """
    box, nu = solver.decomposition.box, float(solver.pde.params["nu"])
    m = min(m, MAX_POINTS_PER_AXIS) if m else MAX_POINTS_PER_AXIS
    pts = diagnostics_grid(box, times, m)
    jet = solver.predict(pts, values=_velocity_jet, n_values=3 + 3 * box.dim)
    if jet is None:
        return None
    nt, d = len(times), box.dim
    jet = jet.reshape(nt, m ** 3, 3 + 3 * d)
    u = jet[..., :3]
    du = jet[..., 3:].reshape(nt, m ** 3, 3, d)          # du[..., c, a] = d u_c / d x_a
    omega = np.stack([du[..., 2, 1] - du[..., 1, 2], du[..., 0, 2] - du[..., 2, 0],
                      du[..., 1, 0] - du[..., 0, 1]], axis=-1)
    return {"t": np.asarray(times, float),
            "energy": 0.5 * (u ** 2).sum(-1).mean(-1),
            "dissipation": -(u * du[..., :, 3]).sum(-1).mean(-1),
            "two_nu_enstrophy": 2 * nu * 0.5 * (omega ** 2).sum(-1).mean(-1),
            "points_per_axis": m}


def is_3d_flow(pde) -> bool:
    """A 3D flow with velocity u, v, w and a viscosity nu (its vorticity and dissipation rate
    can be derived from the networks)."""
    return pde.space_dim == 3 and tuple(pde.outputs[:3]) == ("u", "v", "w") \
        and "nu" in pde.params


def flow_fields(solver, points: np.ndarray) -> dict | None:
    """Collective. Vorticity magnitude |omega| and local dissipation rate 2 nu S_ij S_ij of
    the experts at ``points`` (P, d), from their exact derivatives.

    Returns dict name -> (P,) on rank 0 (None elsewhere): "vorticity_magnitude",
    "dissipation_rate".
    """
    d, nu = solver.decomposition.box.dim, float(solver.pde.params["nu"])
    jet = solver.predict(points, values=_velocity_jet, n_values=3 + 3 * d)
    if jet is None:
        return None
    du = jet[:, 3:].reshape(len(points), 3, d)[..., :3]   # du[p, c, a] = d u_c / d x_a
    omega = np.stack([du[:, 2, 1] - du[:, 1, 2], du[:, 0, 2] - du[:, 2, 0],
                      du[:, 1, 0] - du[:, 0, 1]], axis=-1)
    strain = 0.5 * (du + du.transpose(0, 2, 1))
    return {"vorticity_magnitude": np.sqrt((omega ** 2).sum(-1)),
            "dissipation_rate": 2.0 * nu * (strain ** 2).sum((1, 2))}

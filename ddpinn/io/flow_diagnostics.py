"""Energy diagnostics of a run (``diagnostics.nc``) and their plots against the references.

The file holds, along the time axis ``t``: ``energy``, ``dissipation`` (-dE/dt) and
``two_nu_enstrophy`` of the trained networks, and where a reference exists the same three
with the prefix ``reference_``. Only rank 0 calls these.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import netCDF4
import numpy as np

from ddpinn.io.atomic import atomic_output

DIAGNOSTICS_FILE = "diagnostics.nc"
SERIES = {"energy": "kinetic energy, mean of |u|^2 / 2",
          "dissipation": "dissipation rate -dE/dt",
          "two_nu_enstrophy": "2 nu enstrophy, 2 nu mean of |omega|^2 / 2"}
# nu of the published Re = 1600 Taylor-Green DNS (the gdiag file), drawn where nu matches.
GDIAG_NU = 1.0 / 1600.0


def write_diagnostics(path, diag: dict, reference=None, attrs: Optional[dict] = None) -> dict:
    """Write ``diag`` (from :func:`ddpinn.training.flow_diagnostics.energy_diagnostics`) and
    ``reference`` (a :class:`~ddpinn.references.TGVReference` at the same times, or None).

    Returns the summary written as global attributes: max relative differences to the
    reference (``energy_max_rel_diff``, ``dissipation_max_rel_diff``).
    """
    from ddpinn.io.netcdf import _write_axis, _write_globals

    series = {k: np.asarray(diag[k], float) for k in SERIES}
    summary = {}
    if reference is not None:
        nu = float(reference.nu)
        ref = {"energy": reference.energy, "dissipation": reference.dissipation,
               "two_nu_enstrophy": 2 * nu * np.asarray(reference.enstrophy)}
        for k, v in ref.items():
            series["reference_" + k] = np.asarray(v, float)
        for k in ("energy", "dissipation"):
            summary[f"{k}_max_rel_diff"] = float(np.max(np.abs(series[k] - ref[k]))
                                                 / np.max(np.abs(ref[k])))
    with atomic_output(path) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4", clobber=False) as ds:
            _write_globals(ds, {"title": "ddpinn energy diagnostics",
                                "points_per_axis": int(diag["points_per_axis"]),
                                **(attrs or {}), **summary})
            _write_axis(ds, "t", np.asarray(diag["t"], float), "1")
            for name, values in series.items():
                var = ds.createVariable(name, "f8", ("t",))
                var[:] = values
                base = name.removeprefix("reference_")
                var.units = "1"
                var.long_name = SERIES[base] + (" (reference)" if base != name else
                                                " (networks)")
    return summary


def read_diagnostics(path) -> dict:
    """{"t": (nt,), name: (nt,), ..., "attrs": dict} from :func:`write_diagnostics`."""
    with netCDF4.Dataset(os.fspath(path), "r") as ds:
        ds.set_auto_mask(False)
        out = {name: np.asarray(var[:], float) for name, var in ds.variables.items()}
        out["attrs"] = {k: ds.getncattr(k) for k in ds.ncattrs()}
    return out


def plot_diagnostics(path, out_dir) -> List[Path]:
    """``energy.png`` and ``dissipation.png``: networks, reference and, for nu = 1/1600,
    the published 512^3 DNS (when its file is in the data directory)."""
    from ddpinn.io.figures import new_figure, save_figure
    from ddpinn.references.gdiag import read_gdiag

    d = read_diagnostics(path)
    t = d["t"]
    gdiag = None
    nu = d["attrs"].get("nu")
    if nu is not None and abs(float(nu) - GDIAG_NU) < 1e-12:
        try:
            gdiag = read_gdiag()
        except (OSError, ValueError):
            gdiag = None  # the curve is an extra; the plot stands without it
    written = []
    for name, ylabel in (("energy", "E"), ("dissipation", "dissipation rate")):
        fig = new_figure()
        ax = fig.add_subplot()
        ax.plot(t, d[name], "o-", ms=3, label="networks" + (": -dE/dt" if name != "energy"
                                                              else ""))
        if name == "dissipation":
            ax.plot(t, d["two_nu_enstrophy"], "s--", ms=3, label="networks: 2 nu enstrophy")
        if "reference_" + name in d:
            ax.plot(t, d["reference_" + name], "k-", label=f"spectral reference "
                                                         f"({d['attrs'].get('reference', '')})")
        if gdiag is not None:
            keep = gdiag.time <= t.max() * 1.05
            ax.plot(gdiag.time[keep], getattr(gdiag, name)[keep], "r:",
                    label="512^3 spectral DNS (Re 1600)")
        ax.set_xlabel("t")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
        ax.set_title(f"{name} (nu = {float(nu):.4g})" if nu is not None else name)
        written.append(save_figure(fig, Path(out_dir) / f"{name}.png"))
    return written

"""Probe time series -> ``probes.nc`` (CF-1.8 NetCDF4, feature type ``timeSeries``).

Dimensions ``probe`` and ``time``; ``probe_name(probe)`` names each probe; one variable per
space axis (``x(probe)``, ``y(probe)``, ...) holds its coordinates, ``time(time)`` the time
samples, and one variable per output (``u(probe, time)``, ...) the values. Written
atomically; only rank 0 writes, nothing here is collective.
"""
from __future__ import annotations

import datetime
from typing import Mapping, Optional, Sequence

import numpy as np

from ddpinn.io.atomic import atomic_output
from ddpinn.io.netcdf import CONVENTIONS

PROBES_FILE = "probes.nc"


def write_probe_series(path, series, space_names: Sequence[str], outputs: Sequence[str],
                       attrs: Optional[Mapping[str, object]] = None) -> None:
    """Write time series of probes to a NetCDF file, atomically.

    Parameters
    ----------
    path : str or Path; its directory must exist
    series : ProbeSeries (:mod:`ddpinn.quantities_of_interest.compute`): ``names`` (n),
        ``space`` (n, dim), ``times`` (T,), ``values`` (n, T, m)
    space_names : sequence of dim str, the space axes (``x``, ``y``, ``z``)
    outputs : sequence of m str, the PDE's outputs
    attrs : dict, optional extra global attributes

    Raises
    ------
    ValueError
        Shapes that do not fit, or a name used twice; nothing is written.
    """
    import netCDF4

    from ddpinn.io.netcdf import _attr_value, _version

    names, space = list(series.names), np.asarray(series.space, np.float64)
    times, values = np.asarray(series.times, np.float64), np.asarray(series.values, np.float64)
    n, dim, m = len(names), len(space_names), len(outputs)
    if space.shape != (n, dim) or values.shape != (n, len(times), m):
        raise ValueError(f"{n} probes on {dim} space axes with {m} outputs need space "
                         f"({n}, {dim}) and values ({n}, T, {m}); got {space.shape} and "
                         f"{values.shape}")
    taken = ["probe_name", "time", *space_names, *outputs]
    twice = sorted({k for k in taken if taken.count(k) > 1})
    if twice:
        raise ValueError(f"variable name {twice[0]!r} is used twice in {PROBES_FILE} (probe "
                         f"coordinates, time and outputs share one namespace)")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    merged = {"title": "ddpinn probe time series", "history": f"{now} created by ddpinn run",
              **(attrs or {}), "Conventions": CONVENTIONS, "featureType": "timeSeries",
              "source": f"ddpinn {_version()}"}
    with atomic_output(path) as tmp:
        with netCDF4.Dataset(tmp, "w", format="NETCDF4", clobber=False) as ds:
            for key, value in merged.items():
                ds.setncattr(str(key), _attr_value(value))
            ds.createDimension("probe", n)
            ds.createDimension("time", len(times))
            var = ds.createVariable("probe_name", str, ("probe",))
            var[:] = np.array(names, dtype=object)
            var.cf_role = "timeseries_id"
            var.long_name = "probe name"
            var = ds.createVariable("time", "f8", ("time",))
            var[:] = times
            var.standard_name, var.axis, var.units = "time", "T", "1"
            for j, axis in enumerate(space_names):
                var = ds.createVariable(axis, "f8", ("probe",))
                var[:] = space[:, j]
                var.long_name, var.units = f"{axis} coordinate of the probe", "1"
            for k, name in enumerate(outputs):
                var = ds.createVariable(name, "f8", ("probe", "time"), zlib=True, complevel=4)
                var[:] = values[:, :, k]
                var.long_name = f"{name} predicted by ddpinn at the probe"
                var.units = "1"
                var.coordinates = " ".join(["time", *space_names, "probe_name"])


def read_probe_series(path) -> dict:
    """Read ``probes.nc``: ``{"names": [n str], "space": {axis: (n,)}, "times": (T,),
    "values": {output: (n, T)}, "attrs": {...}}``."""
    import netCDF4

    out = {"names": [], "space": {}, "times": None, "values": {}, "attrs": {}}
    with netCDF4.Dataset(str(path), "r") as ds:
        out["attrs"] = {k: ds.getncattr(k) for k in ds.ncattrs()}
        out["names"] = [str(s) for s in ds["probe_name"][:]]
        out["times"] = np.asarray(ds["time"][:], np.float64)
        for name, var in ds.variables.items():
            if name in ("probe_name", "time"):
                continue
            data = np.asarray(var[:], np.float64)
            (out["space"] if var.dimensions == ("probe",) else out["values"])[name] = data
    return out


__all__ = ["write_probe_series", "read_probe_series", "PROBES_FILE"]

"""Solutions on a tensor grid <-> CF-1.8 NetCDF4 files.

One file holds one solution on a rectilinear grid: a dimension and a coordinate variable per
axis (``x``, ``y``, ``z``, ``t``), one variable per output (``u``, ``v``, ``p``, ...) in the
run's final precision (float64 or float32, the global ``dtype`` attribute says which) and
optionally its pointwise error (``u_error``). Files are written atomically: a reader (or a
crashed job) never sees a half-written ``solution.nc``.

Only rank 0 writes; nothing here is collective.
"""
from __future__ import annotations

import datetime
import os
from typing import Mapping, Optional, Sequence, Union

import netCDF4
import numpy as np

from ddpinn.io.atomic import atomic_output

PathLike = Union[str, "os.PathLike[str]"]

CONVENTIONS = "CF-1.8"
ERROR_SUFFIX = "_error"
# NetCDF variable type of the fields and errors by the run's precision
VARIABLE_TYPES = {"float64": "f8", "float32": "f4"}
# Where a solution grid leaves the domain (a non-box shape), fields and errors hold this
# _FillValue (NetCDF's default fill of its type); the global attribute MASK_ATTR says so.
FILL_VALUES = {"f8": netCDF4.default_fillvals["f8"], "f4": netCDF4.default_fillvals["f4"]}
MASK_ATTR = "domain_mask"

# CF "axis" attribute for the axis names ddpinn uses; other names get no axis attribute.
_CF_AXIS = {"x": "X", "y": "Y", "z": "Z", "t": "T", "time": "T"}


def is_time_axis(name: str) -> bool:
    """True for the names ddpinn gives a time axis (``t`` or ``time``)."""
    return name.lower() in ("t", "time")


# ----------------------------------------------------------------------------------- writing

def write_solution(path: PathLike, axis_names: Sequence[str], axis_values: Sequence[np.ndarray],
                   fields: Mapping[str, np.ndarray],
                   errors: Optional[Mapping[str, np.ndarray]] = None,
                   attrs: Optional[Mapping[str, object]] = None,
                   units: Optional[Mapping[str, str]] = None,
                   dtype: str = "float64", mask: Optional[np.ndarray] = None) -> None:
    """Write a solution on a rectilinear grid to a CF-1.8 NetCDF4 file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; its directory must exist. An existing file is replaced only once
        the new one is complete.
    axis_names : sequence of str, length ``D``
        Axis (and dimension) names in array order, e.g. ``("x", "y")``, ``("x", "t")`` or
        ``("x", "y", "z", "t")``.
    axis_values : sequence of D 1D arrays
        Grid coordinates per axis, strictly monotonic, shapes ``(n_0,)``, ..., ``(n_{D-1},)``.
    fields : dict str -> array, shape ``(n_0, ..., n_{D-1})``
        Outputs by name (``"u"``, ``"p"``, ...); written in precision ``dtype``.
    errors : dict str -> array, optional
        Pointwise error of some of the ``fields`` (same names, same shape); written as
        variables ``f"{name}_error"``.
    attrs : dict, optional
        Extra global attributes. ``str``, ``int``, ``float`` and lists of ints/floats are
        stored as they are; anything else as ``str(value)``. They may override ``title`` and
        ``history`` but not ``Conventions`` or ``source``.
    units : dict str -> str, optional
        Units per axis or field name (default ``"1"``, nondimensional). An error variable
        takes ``units[f"{name}_error"]``, else the units of its field.
    dtype : {"float64", "float32"}
        Variable type of the fields and errors (``f8`` or ``f4``), also stored as the global
        attribute ``dtype``; the coordinates are always float64.
    mask : bool array, shape ``(n_0, ..., n_{D-1})``, optional
        True where a grid point lies in the domain (a non-box shape). Fields and errors are
        ``_FillValue`` elsewhere (a masked array to netCDF4 readers, NaN from
        :func:`read_solution`), and the global attribute ``domain_mask`` says so. Without it
        nothing is masked.

    Raises
    ------
    ValueError
        Inconsistent names or shapes; nothing is written and ``path`` is untouched.
    """
    axis_names = tuple(str(n) for n in axis_names)
    coords = _check_axes(axis_names, axis_values)
    shape = tuple(len(c) for c in coords)
    fields = _check_arrays(fields, shape, "field")
    errors = _check_arrays(errors or {}, shape, "error")
    _check_names(axis_names, fields, errors)
    units = dict(units or {})
    if dtype not in VARIABLE_TYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(VARIABLE_TYPES)}")
    kind = VARIABLE_TYPES[dtype]
    fill = None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"mask has shape {mask.shape}; the grid needs {shape}")
        fill = FILL_VALUES[kind]
        fields = {n: np.ma.masked_array(v, ~mask) for n, v in fields.items()}
        errors = {n: np.ma.masked_array(v, ~mask) for n, v in errors.items()}
        attrs = {**(attrs or {}), MASK_ATTR: "values outside the domain are _FillValue "
                                             f"({int(mask.sum())} of {mask.size} points inside)"}

    with atomic_output(path) as tmp:
        # clobber=False: the temp name is fresh; never overwrite somebody else's file.
        with netCDF4.Dataset(tmp, "w", format="NETCDF4", clobber=False) as ds:
            _write_globals(ds, {**(attrs or {}), "dtype": dtype})
            for name, values in zip(axis_names, coords):
                _write_axis(ds, name, values, units.get(name, "1"))
            for name, data in fields.items():
                _write_field(ds, name, axis_names, data, units.get(name, "1"),
                             has_error=name in errors, kind=kind, fill=fill)
            for name, data in errors.items():
                unit = units.get(name + ERROR_SUFFIX, units.get(name, "1"))
                _write_error(ds, name, axis_names, data, unit, kind, fill)


def _check_axes(axis_names: tuple, axis_values: Sequence[np.ndarray]) -> list:
    if len(axis_names) == 0:
        raise ValueError("axis_names is empty; a solution needs at least one axis")
    if len(set(axis_names)) != len(axis_names):
        raise ValueError(f"axis_names {axis_names} contains a name twice")
    if len(axis_values) != len(axis_names):
        raise ValueError(f"{len(axis_names)} axis_names {axis_names} but "
                         f"{len(axis_values)} axis_values")
    coords = []
    for name, values in zip(axis_names, axis_values):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"axis {name!r}: coordinates must be a non-empty 1D array, "
                             f"got shape {values.shape}")
        steps = np.diff(values)
        # CF requires coordinate variables to be strictly monotonic (and free of NaN).
        if not (np.all(steps > 0) or np.all(steps < 0)) or not np.all(np.isfinite(values)):
            raise ValueError(f"axis {name!r}: coordinates must be finite and strictly monotonic")
        coords.append(values)
    return coords


def _check_arrays(arrays: Mapping[str, np.ndarray], shape: tuple, what: str) -> dict:
    out = {}
    for name, data in arrays.items():
        data = np.asarray(data, dtype=np.float64)
        if data.shape != shape:
            raise ValueError(f"{what} {name!r} has shape {data.shape}; the grid needs {shape}")
        out[str(name)] = data
    return out


def _check_names(axis_names: tuple, fields: dict, errors: dict) -> None:
    for name in errors:
        if name not in fields:
            raise ValueError(f"error {name!r} has no field of that name; fields are "
                             f"{sorted(fields)}")
    taken = set(axis_names)
    for name in list(fields) + [n + ERROR_SUFFIX for n in errors]:
        if not name or "/" in name:
            raise ValueError(f"variable name {name!r} is not allowed in NetCDF")
        if name in taken:
            raise ValueError(f"variable name {name!r} is used twice (axes, fields and "
                             f"'<field>{ERROR_SUFFIX}' variables share one namespace)")
        taken.add(name)


def _version() -> str:
    import ddpinn  # late import: ddpinn/__init__ must not depend on io
    return getattr(ddpinn, "__version__", "unknown")


def _write_globals(ds: netCDF4.Dataset, attrs: Mapping[str, object]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    merged = {"title": "ddpinn solution", "history": f"{now} created by ddpinn"}
    merged.update({str(k): v for k, v in attrs.items()})
    merged["Conventions"] = CONVENTIONS
    merged["source"] = f"ddpinn {_version()}"
    for key, value in merged.items():
        ds.setncattr(key, _attr_value(value))


def _attr_value(value: object):
    """A value NetCDF can store: str, int64, float64 or a 1D numeric array."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)  # NetCDF has no boolean type; "True" reads back unambiguously
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)) for v in value):
        is_int = all(isinstance(v, (int, np.integer)) for v in value)
        return np.asarray(value, dtype=np.int64 if is_int else np.float64)
    return str(value)


def _write_axis(ds: netCDF4.Dataset, name: str, values: np.ndarray, unit: str) -> None:
    ds.createDimension(name, len(values))
    var = ds.createVariable(name, "f8", (name,))
    var[:] = values
    var.units = unit
    if is_time_axis(name):
        var.standard_name = "time"
        var.long_name = "time"
    else:
        var.long_name = f"{name} coordinate"
    if name.lower() in _CF_AXIS:
        var.axis = _CF_AXIS[name.lower()]


def _write_field(ds: netCDF4.Dataset, name: str, dims: tuple, data: np.ndarray, unit: str,
                 has_error: bool, kind: str = "f8", fill=None) -> None:
    var = ds.createVariable(name, kind, dims, zlib=True, complevel=4, fill_value=fill)
    var[:] = data
    var.units = unit
    var.long_name = f"{name} predicted by ddpinn"
    if has_error:
        var.ancillary_variables = name + ERROR_SUFFIX  # CF link from a field to its error


def _write_error(ds: netCDF4.Dataset, name: str, dims: tuple, data: np.ndarray,
                 unit: str, kind: str = "f8", fill=None) -> None:
    var = ds.createVariable(name + ERROR_SUFFIX, kind, dims, zlib=True, complevel=4,
                            fill_value=fill)
    var[:] = data
    var.units = unit
    var.long_name = f"pointwise error of {name}"
    var.ddpinn_error_of = name  # lets read_solution tell errors from fields without guessing


# ----------------------------------------------------------------------------------- reading

def read_solution(path: PathLike) -> dict:
    """Read a file written by :func:`write_solution`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``"axes"``: dict axis name -> 1D float64 array, in the file's axis order;
        ``"fields"``: dict name -> array of shape ``(n_0, ..., n_{D-1})``, NaN where a
        variable holds its ``_FillValue`` (outside a non-box domain);
        ``"errors"``: dict field name -> array of the same shape (may be empty);
        ``"attrs"``: dict of global attributes (numbers as Python scalars, arrays as lists);
        ``"units"``: dict axis/field/error variable name -> units string.
    """
    out = {"axes": {}, "fields": {}, "errors": {}, "attrs": {}, "units": {}}
    with netCDF4.Dataset(os.fspath(path), "r") as ds:
        ds.set_auto_mask(False)  # plain ndarrays; NaN stays NaN
        out["attrs"] = {k: _python_value(ds.getncattr(k)) for k in ds.ncattrs()}
        for name in ds.dimensions:
            if name in ds.variables:
                out["axes"][name] = np.asarray(ds.variables[name][:], dtype=np.float64)
        for name, var in ds.variables.items():
            out["units"][name] = str(getattr(var, "units", "1"))
            if name in out["axes"]:
                continue
            data = np.asarray(var[:], dtype=np.float64)
            if "_FillValue" in var.ncattrs():
                data[data == float(var.getncattr("_FillValue"))] = np.nan
            target = _error_target(name, var, ds)
            if target is None:
                out["fields"][name] = data
            else:
                out["errors"][target] = data
    return out


def _error_target(name: str, var, ds: netCDF4.Dataset) -> Optional[str]:
    """The field a variable is the error of, or None if it is a field itself."""
    if "ddpinn_error_of" in var.ncattrs():
        return str(var.getncattr("ddpinn_error_of"))
    # Files from other writers: fall back on the naming convention.
    if name.endswith(ERROR_SUFFIX) and name[:-len(ERROR_SUFFIX)] in ds.variables:
        return name[:-len(ERROR_SUFFIX)]
    return None


def _python_value(value: object):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["write_solution", "read_solution", "atomic_output", "is_time_axis",
           "CONVENTIONS", "ERROR_SUFFIX", "MASK_ATTR"]

"""Scattered points in and out: CSV and NetCDF point lists (``ddpinn eval --points``).

A points file names its columns: the case's axes (``x``, ``y``, ``z``, ``t``) are required;
columns named like the PDE's outputs (``u``, ``v``, ``p``, ...) are read as reference values;
any other column is ignored.

- CSV: a header line of column names, then one point per line, comma separated. Blank lines
  and lines starting with ``#`` are skipped.
- NetCDF: one 1D variable per column, all of the same length (the point dimension). Masked
  (fill) values count as missing.

The format of an input file is recognised by its first bytes (NetCDF 3 or 4/HDF5), else CSV.
Every problem is reported as one :class:`PointsFileError` naming the file and what is wrong.
Nothing here is collective.
"""
from __future__ import annotations

import csv
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddpinn.io.atomic import atomic_output

NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
OUT_FORMATS = {".csv": "csv", ".nc": "netcdf", ".nc4": "netcdf"}


class PointsFileError(ValueError):
    """A points file that cannot be used; the message names the file and the reason."""


@dataclass
class PointSet:
    """Points read from a file.

    points : ndarray, shape (P, dim), float64, columns in the case's axis order
    reference : dict name -> ndarray (P,), the columns named like PDE outputs, in the PDE's
        output order
    source : str, the file
    """

    points: np.ndarray
    reference: dict
    source: str

    def __len__(self) -> int:
        return len(self.points)


def file_format(path) -> str:
    """``"netcdf"`` or ``"csv"`` by the file's first bytes. Raises PointsFileError if the
    file cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise PointsFileError(f"cannot read points file {str(path)!r}: "
                              f"{exc.strerror or exc}") from None
    return "netcdf" if head.startswith(NETCDF_MAGIC) else "csv"


def read_points(path, axis_names, output_names=()) -> PointSet:
    """Read a CSV or NetCDF point list.

    Parameters
    ----------
    path : str or Path
    axis_names : sequence of str, length dim -- required columns, in this order
    output_names : sequence of str -- columns read as reference values when present

    Returns
    -------
    PointSet

    Raises
    ------
    PointsFileError
        Missing or unreadable file, a missing axis column, a value that is not a number,
        NaN or infinite values, columns of different lengths, no points.
    """
    path = Path(path)
    reader = _read_netcdf if file_format(path) == "netcdf" else _read_csv
    wanted = list(axis_names) + [n for n in output_names if n not in axis_names]
    columns, where = reader(path, wanted)
    missing = [n for n in axis_names if n not in columns]
    if missing:
        have = ", ".join(repr(n) for n in columns) or "none of them"
        raise PointsFileError(
            f"points file {str(path)!r} has no {'column' if len(missing) == 1 else 'columns'} "
            f"{', '.join(repr(n) for n in missing)} (the case's axes are "
            f"{', '.join(axis_names)}; found {have})")
    for name, values in columns.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise PointsFileError(
                f"points file {str(path)!r}: column {name!r} has {len(bad)} missing, NaN or "
                f"infinite {'value' if len(bad) == 1 else 'values'}, the first {where(bad[0])}")
    n = len(columns[axis_names[0]])
    if n == 0:
        raise PointsFileError(f"points file {str(path)!r} holds no points")
    points = np.stack([columns[a] for a in axis_names], axis=1)
    reference = {k: columns[k] for k in output_names if k in columns}
    return PointSet(points, reference, str(path))


def _read_csv(path: Path, wanted):
    """Columns ``wanted`` that the CSV file has: ({name: (P,)}, where(row) -> text)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            lines = [(i + 1, line) for i, line in enumerate(fh)
                     if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise PointsFileError(f"cannot read points file {str(path)!r}: {reason}") from None
    if not lines:
        raise PointsFileError(f"points file {str(path)!r} is empty: a CSV points file needs a "
                              f"header line of column names")
    rows = list(csv.reader(line for _, line in lines))
    header = [h.strip() for h in rows[0]]
    dupes = sorted({h for h in header if header.count(h) > 1 and h})
    if dupes:
        raise PointsFileError(f"points file {str(path)!r}: column {dupes[0]!r} appears twice "
                              f"in the header")
    numbers = [(i, line_no) for i, (line_no, _) in enumerate(lines[1:], 1)]
    for i, line_no in numbers:
        if len(rows[i]) != len(header):
            raise PointsFileError(f"points file {str(path)!r}: line {line_no} has "
                                  f"{len(rows[i])} values but the header names {len(header)} "
                                  f"columns")
    line_of = np.array([line_no for _, line_no in numbers], dtype=np.int64)
    columns = {}
    for name in wanted:
        if name not in header:
            continue
        k = header.index(name)
        values = np.empty(len(numbers))
        for j, (i, line_no) in enumerate(numbers):
            text = rows[i][k].strip()
            try:
                values[j] = float(text) if text else np.nan
            except ValueError:
                raise PointsFileError(f"points file {str(path)!r}: line {line_no}, column "
                                      f"{name!r}: {text!r} is not a number") from None
        columns[name] = values
    return columns, lambda j: f"on line {int(line_of[j])}"


def _read_netcdf(path: Path, wanted):
    """1D variables ``wanted`` that the NetCDF file has: ({name: (P,)}, where(i) -> text)."""
    import netCDF4

    columns = {}
    try:
        with netCDF4.Dataset(os.fspath(path), "r") as ds:
            for name in wanted:
                if name not in ds.variables:
                    continue
                var = ds.variables[name]
                if var.ndim != 1:
                    raise PointsFileError(
                        f"points file {str(path)!r}: variable {name!r} has dimensions "
                        f"{var.dimensions}; a point list needs 1D variables")
                data = np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan)
                columns[name] = np.asarray(data, dtype=np.float64)
    except PointsFileError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise PointsFileError(f"cannot read points file {str(path)!r} as NetCDF: "
                              f"{exc}") from None
    lengths = {n: len(v) for n, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise PointsFileError(f"points file {str(path)!r}: the variables have different "
                              f"lengths ({', '.join(f'{n}: {k}' for n, k in lengths.items())})")
    return columns, lambda j: f"at index {int(j)}"


# ----------------------------------------------------------------------------------- writing

def out_format(path) -> str:
    """``"csv"`` or ``"netcdf"`` by the extension of an output file; PointsFileError
    otherwise."""
    fmt = OUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise PointsFileError(f"cannot tell the format of output file {str(path)!r}: "
                              f"use the extension .csv or .nc")
    return fmt


def write_points(path, columns: dict, attrs: dict | None = None) -> None:
    """Write columns of equal length as CSV or NetCDF (by the extension), atomically.

    Parameters
    ----------
    path : str or Path; its directory must exist
    columns : dict name -> ndarray (P,), written in this order as float64 (CSV: 17
        significant digits, so values read back exactly)
    attrs : dict, NetCDF global attributes (a CSV file has none)
    """
    fmt = out_format(path)
    names = list(columns)
    data = np.stack([np.asarray(columns[n], np.float64) for n in names], axis=1)
    with atomic_output(path) as tmp:
        if fmt == "csv":
            np.savetxt(tmp, data, fmt="%.17g", delimiter=",", header=",".join(names),
                       comments="")
        else:
            _write_netcdf(tmp, names, data, attrs or {})


def _write_netcdf(tmp, names, data, attrs) -> None:
    import netCDF4

    from ddpinn.io.netcdf import _attr_value, _version

    with netCDF4.Dataset(tmp, "w", format="NETCDF4", clobber=False) as ds:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        merged = {"title": "ddpinn prediction at points",
                  "history": f"{now} created by ddpinn eval", **attrs,
                  "source": f"ddpinn {_version()}"}
        for key, value in merged.items():
            ds.setncattr(str(key), _attr_value(value))
        ds.createDimension("point", data.shape[0])
        for k, name in enumerate(names):
            var = ds.createVariable(name, "f8", ("point",), zlib=True, complevel=4)
            var[:] = data[:, k]


def write_at_reference(path, axis_names, points, outputs, pred, reference,
                       attrs: dict | None = None) -> None:
    """The prediction at a reference's scattered points, the reference and their difference
    (``solution_at_reference.nc`` of a run), atomically.

    Parameters
    ----------
    path : str or Path, ``.nc`` (or ``.csv``); its directory must exist
    axis_names : sequence of D str; points : ndarray (Q, D), the reference's points
    outputs : sequence of m str; pred, reference : ndarray (Q, m)
    attrs : dict, NetCDF global attributes

    The columns are the axes, then per output ``<name>``, ``<name>_reference`` and
    ``<name>_error`` (prediction minus reference), all along the dimension ``point``.
    """
    points, pred = np.asarray(points, np.float64), np.asarray(pred, np.float64)
    reference = np.asarray(reference, np.float64)
    q, m = len(points), len(outputs)
    if points.shape != (q, len(axis_names)) or pred.shape != (q, m) or \
            reference.shape != (q, m):
        raise ValueError(f"{q} points on axes {list(axis_names)} with outputs {list(outputs)} "
                         f"need points ({q}, {len(axis_names)}), pred and reference ({q}, {m}); "
                         f"got {points.shape}, {pred.shape} and {reference.shape}")
    columns = {a: points[:, k] for k, a in enumerate(axis_names)}
    for k, name in enumerate(outputs):
        columns.update({name: pred[:, k], f"{name}_reference": reference[:, k],
                        f"{name}_error": pred[:, k] - reference[:, k]})
    if len(columns) != len(axis_names) + 3 * m:
        raise ValueError(f"the axes {list(axis_names)} and outputs {list(outputs)} share a "
                         f"column name")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_points(path, columns, {"title": "ddpinn solution at the reference points",
                                 "history": f"{now} created by ddpinn run", **(attrs or {})})

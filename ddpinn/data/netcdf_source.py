"""NetCDF data files: metadata, the choice between a point list and a grid, and point lists.

A file is a grid when a field variable has more than one dimension (or, with one case axis,
when the fields lie on the axis's own coordinate dimension); else a point list, whose
variables must be 1D and of one length. The grid reader is :mod:`ddpinn.data.netcdf_grid`.

Masked values (``_FillValue``, ``missing_value``, valid range), read with netCDF4's automatic
masking, count as missing. The file is opened for each pass and closed after it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ddpinn.data.errors import DataFileError
from ddpinn.data.points_source import CHUNK_ROWS, PointsSource


@dataclass
class Meta:
    """A NetCDF file's metadata (root group).

    variables : dict name -> (dimensions tuple, shape tuple, bytes per value)
    dimensions : dict name -> length
    """

    variables: dict
    dimensions: dict


@contextmanager
def dataset(path):
    """The file open for reading (automatic masking on); DataFileError if it cannot be."""
    import netCDF4

    try:
        ds = netCDF4.Dataset(os.fspath(path), "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataFileError(f"cannot read data file {str(path)!r} as NetCDF: {exc}") from None
    try:
        ds.set_auto_mask(True)
        yield ds
    finally:
        ds.close()


def read(path, var, index):
    """``var[index]`` as a masked array; DataFileError naming the file if reading fails."""
    try:
        return np.ma.asarray(var[index])
    except (OSError, RuntimeError, ValueError, IndexError) as exc:
        raise DataFileError(f"data file {str(path)!r}: cannot read variable {var.name!r}: "
                            f"{exc}") from None


def as_float(raw) -> np.ndarray:
    """A masked array as float64, masked values as NaN."""
    return np.ma.filled(np.ma.asarray(raw, dtype=np.float64), np.nan)


def describe(path) -> Meta:
    """The variables' dimensions, shapes and value sizes (no values read)."""
    with dataset(path) as ds:
        variables = {}
        for name, var in ds.variables.items():
            try:
                size = np.dtype(var.dtype).itemsize
            except TypeError:
                size = 0
            variables[name] = (tuple(var.dimensions), tuple(var.shape), size)
        dimensions = {name: len(dim) for name, dim in ds.dimensions.items()}
    return Meta(variables, dimensions)


class NetcdfPoints(PointsSource):
    """A NetCDF point list: one 1D variable per axis and per field, all of one length."""

    def __init__(self, path, axes: dict, fields: dict, outputs: tuple, interpolation: str,
                 meta: Meta):
        super().__init__(path, axes, interpolation)
        self.resolve_fields(fields, outputs, meta.variables, "variable")
        names = list(self.file_axes.values()) + list(self.file_fields.values())
        self.require(names, meta.variables, "variable")
        for name in names:
            dims = meta.variables[name][0]
            if len(dims) != 1:
                raise self.error(f"variable {name!r} has dimensions {dims}; a point list "
                                 f"needs 1D variables")
        lengths = {n: meta.variables[n][1][0] for n in dict.fromkeys(names)}
        if len(set(lengths.values())) > 1:
            raise self.error(f"the point variables have different lengths "
                             f"({', '.join(f'{n}: {k}' for n, k in lengths.items())})")
        self.n_rows = next(iter(lengths.values()))
        if self.n_rows == 0:
            raise self.error("holds no points (its point variables have length 0)")
        self._size = {n: meta.variables[n][2] for n in names}

    def _column(self, ds, name: str, start: int, stop: int) -> np.ndarray:
        raw = read(self.path, ds.variables[name], slice(start, stop))
        self.bytes_read += raw.size * self._size[name]
        return as_float(raw).reshape(-1)

    def chunks(self):
        axes = list(self.file_axes.values())
        fields = list(self.file_fields.values())
        with dataset(self.path) as ds:
            for start in range(0, self.n_rows, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, self.n_rows)
                xyz = np.stack([self._column(ds, a, start, stop) for a in axes], axis=1)

                def fetch(mask, start=start):
                    rows = np.flatnonzero(mask)
                    a, b = start + rows[0], start + rows[-1] + 1
                    cols = [self._column(ds, f, a, b)[rows - rows[0]] for f in fields]
                    return np.stack(cols, axis=1) if cols else np.empty((len(rows), 0))

                yield xyz, (lambda j, start=start: f"at index {start + j}"), fetch

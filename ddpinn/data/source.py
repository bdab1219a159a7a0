"""Data files opened for reading by parts: point lists (CSV, NetCDF) and NetCDF grids.

:func:`ddpinn.data.readers.open_data` reads a file's metadata only (the CSV header line, the NetCDF variables'
dimensions); a :class:`DataSource` then reads what is asked for:

- :meth:`~DataSource.bounds`: the data's coverage (a grid: its coordinate variables; points:
  one streaming pass over the axis columns);
- :meth:`~DataSource.read_box`: the part of the file inside a box, as a
  :class:`~ddpinn.data.block.DataBlock` that interpolates (a grid: one hyperslab, one more
  grid line on each side where there is one; points: the rows inside, read in chunks);
- :meth:`~DataSource.estimate_bytes`: the memory of that block, before reading it.

Formats (told apart by the first bytes, as :func:`ddpinn.io.points_file.file_format`):

- CSV: the first line that is neither blank nor starts with ``#`` names the columns; then one
  point per line, comma separated (blank and ``#`` lines skipped) -> kind ``"points"``;
- NetCDF point list: every variable read is 1D, all of one length -> kind ``"points"``;
- NetCDF grid: each field variable has exactly one dimension per case axis, in any order,
  each with a 1D strictly monotonic coordinate variable of the same name (decreasing ones
  are flipped) -> kind ``"grid"``. A time axis is just another axis.

Every problem is one :class:`DataFileError` naming the file and what is wrong. No MPI here:
each rank opens and reads its own part.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ddpinn.data.block import TOLERANCE, DataBlock, grown
from ddpinn.data.errors import DataFileError

__all__ = ["DataFileError", "DataSource", "DataBlock", "check_covers"]

class DataSource:
    """A data file opened by :func:`open_data`.

    path : Path
    kind : str, ``"points"`` or ``"grid"``
    axes : tuple of str, the case's axes (length d)
    fields : tuple of str, the outputs read (length m), in ``outputs`` order when given
    bytes_read : int, bytes of values read from the file so far (coordinates and field
        values; CSV: bytes of text scanned)
    interpolation : str, given to the blocks read
    file_axes, file_fields : dict, case axis / output -> its name in the file
    """

    kind = ""

    def __init__(self, path: Path, axes: dict, interpolation: str):
        self.path = Path(path)
        self.axes = tuple(axes)
        self.file_axes = dict(axes)
        self.fields: tuple = ()
        self.file_fields: dict = {}
        self.interpolation = interpolation
        self.bytes_read = 0

    # ------------------------------------------------------------------ for the readers

    def error(self, text: str) -> DataFileError:
        """DataFileError "data file 'a.csv' is empty" / "data file 'a.csv': line 3 ..."."""
        sep = " " if text.split(" ", 1)[0] in ("has", "is", "holds", "cannot") else ": "
        return DataFileError(f"data file {str(self.path)!r}{sep}{text}")

    def resolve_fields(self, fields: dict, outputs: tuple, available, what: str) -> None:
        """Set ``fields`` / ``file_fields`` from the mapping asked for and the names the file
        has; DataFileError for a missing one (the available ``what``s are listed)."""
        available = list(available)
        axis_names = set(self.file_axes.values())
        if not fields:
            fields = {o: o for o in outputs if o in available and o not in axis_names}
            if not fields:
                raise self.error(f"has none of the outputs {', '.join(outputs) or '(none)'} "
                                 f"as a {what} (found {self.listing(available)})")
        order = [o for o in outputs if o in fields] + [o for o in fields if o not in outputs]
        self.fields = tuple(order)
        self.file_fields = {o: fields[o] for o in order}
        self.require(list(self.file_fields.values()), available, what)

    def require(self, names, available, what: str) -> None:
        missing = [n for n in names if n not in available]
        if missing:
            s = "" if len(missing) == 1 else "s"
            raise self.error(f"has no {what}{s} {', '.join(map(repr, missing))} "
                             f"(found {self.listing(available)})")

    @staticmethod
    def listing(names) -> str:
        names = list(names)
        return ", ".join(map(repr, names)) if names else "none"

    def box(self, lower, upper) -> tuple:
        """(lower, upper) as float64 (d,) arrays, checked."""
        d = len(self.axes)
        lo = np.asarray(lower, dtype=np.float64).reshape(-1)
        hi = np.asarray(upper, dtype=np.float64).reshape(-1)
        if lo.shape != (d,) or hi.shape != (d,):
            raise ValueError(f"a box of {str(self.path)!r} needs {d} lower and upper bounds "
                             f"(axes {', '.join(self.axes)}), got {lo.shape} and {hi.shape}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()):
            raise ValueError(f"box [{lo}, {hi}] of {str(self.path)!r}: lower must be <= upper "
                             f"and finite")
        return lo, hi

    def new_block(self, points, values, grid) -> DataBlock:
        return DataBlock(self.kind, self.axes, self.fields, str(self.path), points, values,
                         grid, self.interpolation)

    # ------------------------------------------------------------------ the interface

    def bounds(self) -> tuple:
        """The data's coverage: (lower (d,), upper (d,)) float64, in case axis order."""
        raise NotImplementedError

    def read_box(self, lower, upper) -> DataBlock:
        """The part of the file needed to interpolate inside [lower, upper] ((d,) each)."""
        raise NotImplementedError

    def estimate_bytes(self, lower, upper) -> int:
        """Memory (bytes) of :meth:`read_box`'s block for the same box."""
        raise NotImplementedError

    def count_box(self, lower, upper) -> int:
        """Points (rows, or grid nodes) inside [lower, upper]."""
        raise NotImplementedError

    def read_inside(self, lower, upper) -> DataBlock:
        """The points (rows, or grid lines) inside [lower, upper] only, read as a part of the
        file: a reference larger than the domain is scored where the two overlap. The box
        is :func:`~ddpinn.data.block.grown` by the tolerance."""
        return self.read_box(*self.overlap(lower, upper)).within(lower, upper)

    def overlap(self, lower, upper) -> tuple:
        """(lower, upper): the data's coverage within [lower, upper] grown by the tolerance
        (:func:`~ddpinn.data.block.grown`); lower > upper on an axis where the two do not
        meet."""
        lo, hi = grown(*self.box(lower, upper))
        d_lo, d_hi = self.bounds()
        return np.maximum(lo, d_lo), np.minimum(hi, d_hi)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, kind={self.kind!r}, "
                f"axes={self.axes}, fields={self.fields})")


def check_covers(source: DataSource, lower, upper, what: str) -> None:
    """DataFileError unless the data of ``source`` covers the box [lower, upper].

    A relative tolerance of 1e-9 of the axis's extent applies. ``what`` names the box in the
    caller's words (``"the domain"``), e.g. "data file 'a.nc' covers t in [0, 0.4] but the
    domain needs t in [0, 0.5]".
    """
    lo, hi = source.box(lower, upper)
    d0, d1 = source.bounds()
    for k, axis in enumerate(source.axes):
        scale = max(d1[k] - d0[k], hi[k] - lo[k])
        if scale <= 0:
            scale = max(abs(d0[k]), abs(hi[k]), 1.0)
        tol = TOLERANCE * scale
        if lo[k] < d0[k] - tol or hi[k] > d1[k] + tol:
            raise DataFileError(
                f"data file {str(source.path)!r} covers {axis} in [{d0[k]:.10g}, "
                f"{d1[k]:.10g}] but {what} needs {axis} in [{lo[k]:.10g}, {hi[k]:.10g}]")

"""What the point-list readers (CSV, NetCDF) share: bounds, boxes and checks, on top of one
method that reads the file in chunks of rows.

A reader implements :meth:`PointsSource.chunks`, yielding for each chunk of rows the axis
values and a function that reads the fields' values of chosen rows of that chunk, so that
field values are read only where a chunk has rows inside the box.
"""
from __future__ import annotations

import numpy as np

from ddpinn.data.block import DataBlock
from ddpinn.data.source import DataSource

#: Rows read at once.
CHUNK_ROWS = 1 << 16


class PointsSource(DataSource):
    """A point list: one row per point, one column per axis and per field."""

    kind = "points"

    def __init__(self, path, axes: dict, interpolation: str):
        super().__init__(path, axes, interpolation)
        self._bounds = None

    def chunks(self):
        """Yield ``(xyz, where, fetch)`` per chunk of rows, in file order.

        xyz : ndarray (k, d) float64, the axis values (NaN for a missing one)
        where : callable j -> str, where row j of the chunk is in the file ("on line 7")
        fetch : callable mask (k,) bool -> ndarray (mask.sum(), m) float64, the fields'
            values of those rows (NaN for a missing one)
        """
        raise NotImplementedError

    def _checked(self, array: np.ndarray, names, where) -> None:
        """DataFileError at the first row of ``array`` (k, c) that is not finite."""
        bad = ~np.isfinite(array)
        if bad.any():
            j, c = np.argwhere(bad)[0]
            raise self.error(f"column {names[c]!r} has a missing (fill), NaN or infinite "
                             f"value {where(int(j))}")

    def _rows(self):
        """Chunks as :meth:`chunks` with the axis values checked."""
        names = list(self.file_axes.values())
        n = 0
        for xyz, where, fetch in self.chunks():
            self._checked(xyz, names, where)
            n += len(xyz)
            yield xyz, where, fetch
        if n == 0:
            raise self.error("holds no rows of data")

    def bounds(self) -> tuple:
        """(lower (d,), upper (d,)): min and max over the rows (one pass, kept)."""
        if self._bounds is None:
            lo = np.full(len(self.axes), np.inf)
            hi = np.full(len(self.axes), -np.inf)
            for xyz, _, _ in self._rows():
                if len(xyz):
                    lo = np.minimum(lo, xyz.min(axis=0))
                    hi = np.maximum(hi, xyz.max(axis=0))
            self._bounds = (lo, hi)
        return self._bounds[0].copy(), self._bounds[1].copy()

    def read_box(self, lower, upper) -> DataBlock:
        """The rows with lower <= x <= upper (on every axis), in file order.

        Linear interpolation of a scattered block covers the convex hull of these rows only:
        a caller that interpolates up to the box's faces asks for a larger box.

        Returns
        -------
        DataBlock with points (P, d) and values (P, m); P may be 0
        """
        lo, hi = self.box(lower, upper)
        names = list(self.file_fields.values())
        points, values = [], []
        for xyz, where, fetch in self._rows():
            inside = np.all((xyz >= lo) & (xyz <= hi), axis=1)
            if not inside.any():
                continue
            vals = fetch(inside)
            rows = np.flatnonzero(inside)
            self._checked(vals, names, lambda j: where(int(rows[j])))
            points.append(xyz[inside])
            values.append(vals)
        d, m = len(self.axes), len(self.fields)
        pts = np.concatenate(points) if points else np.empty((0, d))
        vals = np.concatenate(values) if values else np.empty((0, m))
        return self.new_block(np.ascontiguousarray(pts, dtype=np.float64),
                              np.ascontiguousarray(vals, dtype=np.float64), None)

    def count_box(self, lower, upper) -> int:
        """Rows inside [lower, upper] (a pass over the axis columns)."""
        lo, hi = self.box(lower, upper)
        return int(sum(np.all((xyz >= lo) & (xyz <= hi), axis=1).sum()
                       for xyz, _, _ in self._rows()))

    def estimate_bytes(self, lower, upper) -> int:
        """Bytes of :meth:`read_box`'s block: rows inside times (d + m) float64."""
        return self.count_box(lower, upper) * (len(self.axes) + len(self.fields)) * 8

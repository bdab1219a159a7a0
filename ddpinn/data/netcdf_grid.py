"""NetCDF grids: field variables with one dimension per case axis, in any order, each
dimension with a 1D strictly monotonic coordinate variable of its name.

Coordinates are read once (on the first :meth:`~NetcdfGrid.bounds`, box or estimate) and
kept; decreasing ones are flipped so that a block's grid always increases. A box reads one
hyperslab per field: the index range covering the box plus one more grid line on each side
where there is one, transposed to the case's axis order.
"""
from __future__ import annotations

import numpy as np

from ddpinn.data.block import DataBlock
from ddpinn.data.netcdf_source import Meta, as_float, dataset, read
from ddpinn.data.source import DataSource


class NetcdfGrid(DataSource):
    """A NetCDF tensor grid (see the module docstring)."""

    kind = "grid"

    def __init__(self, path, axes: dict, fields: dict, outputs: tuple, interpolation: str,
                 meta: Meta):
        super().__init__(path, axes, interpolation)
        self.resolve_fields(fields, outputs, meta.variables, "variable")
        coords = list(self.file_axes.values())
        for name in self.file_fields.values():
            dims = meta.variables[name][0]
            if len(dims) != len(coords) or set(dims) != set(coords):
                raise self.error(
                    f"variable {name!r} has dimensions {dims}; a grid variable needs exactly "
                    f"one dimension per case axis ({', '.join(self.axes)}), named like their "
                    f"coordinate variables {tuple(coords)}, in any order")
        for name in coords:
            if name not in meta.variables:
                raise self.error(f"dimension {name!r} has no coordinate variable (a 1D "
                                 f"variable {name!r} on it)")
            if meta.variables[name][0] != (name,):
                raise self.error(f"coordinate variable {name!r} has dimensions "
                                 f"{meta.variables[name][0]}; it must be 1D on dimension "
                                 f"{name!r}")
        self.sizes = [meta.dimensions[name] for name in coords]
        empty = [name for name, n in zip(coords, self.sizes) if n == 0]
        if empty:
            raise self.error(f"dimension {empty[0]!r} has length 0: the grid holds no data")
        # perm[out][k]: the dimension of the variable of ``out`` that is case axis k
        self._perm = {out: [meta.variables[name][0].index(c) for c in coords]
                      for out, name in self.file_fields.items()}
        self._size = {name: meta.variables[name][2] for name in
                      coords + list(self.file_fields.values())}
        self._coords = None   # increasing coordinates per case axis
        self._flip = None     # whether the file's coordinate decreases, per case axis

    # ------------------------------------------------------------------ coordinates

    def coordinates(self) -> list:
        """The coordinates of each case axis, increasing float64 arrays (read once)."""
        if self._coords is None:
            coords, flips = [], []
            with dataset(self.path) as ds:
                for name in self.file_axes.values():
                    raw = read(self.path, ds.variables[name], slice(None))
                    self.bytes_read += raw.size * self._size[name]
                    c = as_float(raw).reshape(-1)
                    bad = np.flatnonzero(~np.isfinite(c))
                    if len(bad):
                        raise self.error(f"coordinate variable {name!r} has a missing "
                                         f"(fill), NaN or infinite value at index {bad[0]}")
                    coords.append(self._monotonic(name, c))
                    flips.append(len(c) > 1 and c[0] > c[-1])
            self._coords, self._flip = coords, flips
        return self._coords

    def _monotonic(self, name: str, c: np.ndarray) -> np.ndarray:
        step = np.diff(c)
        if len(c) > 1 and not ((step > 0).all() or (step < 0).all()):
            sign = 1.0 if c[-1] > c[0] else -1.0
            i = int(np.flatnonzero(sign * step <= 0)[0])
            raise self.error(f"coordinate variable {name!r} is not strictly monotonic: "
                             f"{name}[{i}] = {c[i]:.10g}, {name}[{i + 1}] = {c[i + 1]:.10g}")
        return np.ascontiguousarray(c[::-1] if len(c) > 1 and c[0] > c[-1] else c)

    def bounds(self) -> tuple:
        """(lower (d,), upper (d,)): the first and last coordinate of each axis."""
        coords = self.coordinates()
        return (np.array([c[0] for c in coords]), np.array([c[-1] for c in coords]))

    def index_ranges(self, lower, upper) -> list:
        """Per case axis, (i0, i1) inclusive, in increasing-coordinate order: the lines
        covering [lower, upper] plus one more on each side where there is one."""
        lo, hi = self.box(lower, upper)
        out = []
        for k, c in enumerate(self.coordinates()):
            i0 = max(int(np.searchsorted(c, lo[k], side="right")) - 2, 0)
            i1 = min(int(np.searchsorted(c, hi[k], side="left")) + 1, len(c) - 1)
            out.append((min(i0, i1), i1))
        return out

    def count_box(self, lower, upper) -> int:
        """Grid nodes inside [lower, upper] (from the coordinate variables alone)."""
        lo, hi = self.box(lower, upper)
        return int(np.prod([np.count_nonzero((c >= lo[k]) & (c <= hi[k]))
                            for k, c in enumerate(self.coordinates())]))

    # ------------------------------------------------------------------ reading

    def estimate_bytes(self, lower, upper) -> int:
        """Bytes of :meth:`read_box`'s block: values (n_1, ..., n_d, m) and the d
        coordinate arrays, float64."""
        sizes = [i1 - i0 + 1 for i0, i1 in self.index_ranges(lower, upper)]
        return int(np.prod(sizes)) * len(self.fields) * 8 + sum(sizes) * 8

    def read_box(self, lower, upper) -> DataBlock:
        """One hyperslab per field covering [lower, upper] (see the module docstring).

        Returns
        -------
        DataBlock with grid (d arrays) and values (n_1, ..., n_d, m) in case axis order
        """
        ranges = self.index_ranges(lower, upper)
        coords = self.coordinates()
        grid = [c[i0:i1 + 1].copy() for c, (i0, i1) in zip(coords, ranges)]
        # the same ranges in the file's index order (a decreasing axis counts from its end)
        starts = [len(c) - 1 - i1 if f else i0
                  for c, f, (i0, i1) in zip(coords, self._flip, ranges)]
        shape = tuple(len(g) for g in grid)
        values = np.empty(shape + (len(self.fields),))
        with dataset(self.path) as ds:
            for j, (out, name) in enumerate(self.file_fields.items()):
                perm = self._perm[out]
                index = [slice(None)] * len(perm)
                for k, dim in enumerate(perm):
                    index[dim] = slice(starts[k], starts[k] + shape[k])
                raw = read(self.path, ds.variables[name], tuple(index))
                self.bytes_read += raw.size * self._size[name]
                data = as_float(raw)
                self._check(out, data, index)
                data = np.transpose(data, perm)
                flipped = tuple(k for k, f in enumerate(self._flip) if f)
                values[..., j] = np.flip(data, axis=flipped) if flipped else data
        return self.new_block(None, values, grid)

    def _check(self, out: str, data: np.ndarray, index: list) -> None:
        """DataFileError at the first missing, NaN or infinite value of the slab ``data``
        (read at ``index``, in the variable's own dimension order) of output ``out``."""
        bad = ~np.isfinite(data)
        if not bad.any():
            return
        first = np.argwhere(bad)[0]
        names = list(self.file_axes.values())
        dims = [None] * len(names)
        for k, dim in enumerate(self._perm[out]):
            dims[dim] = k
        at, where = [], []
        for k, i, sl in zip(dims, first, index):
            fi = int(sl.start + i)
            c = self.coordinates()[k]
            value = c[len(c) - 1 - fi] if self._flip[k] else c[fi]
            at.append(f"{names[k]}={fi}")
            where.append(f"{names[k]}={value:.10g}")
        raise self.error(f"variable {self.file_fields[out]!r} has a missing (fill), NaN or "
                         f"infinite value at grid index [{', '.join(at)}] "
                         f"({', '.join(where)})")

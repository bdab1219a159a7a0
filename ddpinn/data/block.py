"""A block of data read from a file (:meth:`ddpinn.data.DataSource.read_box`) and its
interpolation at any points inside its coverage.

- grid: values on a tensor grid of increasing coordinates, interpolated with
  :class:`scipy.interpolate.RegularGridInterpolator` (linear, nearest) or the local cubic of
  :mod:`ddpinn.data.local_cubic`; an axis with a single coordinate is constant along it and
  covers that coordinate only;
- points: scattered rows, interpolated with :class:`scipy.interpolate.LinearNDInterpolator`
  (linear inside the convex hull of the rows), piecewise linear for one axis, or the nearest
  row. An axis on which every row has the same value is constant along it, as on a grid.

Asking for a point outside the coverage raises :class:`DataFileError` naming the file and the
first such point; nothing is extrapolated. The interpolator is built on the first call and
reused. Nothing here is collective.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ddpinn.data import local_cubic
from ddpinn.data.errors import DataFileError

#: Relative tolerance (of an axis's extent) of the coverage checks.
TOLERANCE = 1e-9


@dataclass
class DataBlock:
    """Values read from a data file.

    kind : str, ``"points"`` or ``"grid"``
    axes_names : tuple of str, the case's axes (length d)
    fields : tuple of str, the outputs held (length m)
    source : str, the file, for messages
    points : ndarray (P, d) float64 for points, else None
    values : ndarray (P, m) for points, (n_1, ..., n_d, m) for a grid, float64
    grid : list of d 1D increasing float64 arrays (length n_k) for a grid, else None
    interpolation : str, ``"linear"``, ``"nearest"`` or ``"cubic"`` (grids only)
    """

    kind: str
    axes_names: tuple
    fields: tuple
    source: str
    points: np.ndarray | None
    values: np.ndarray
    grid: list | None
    interpolation: str = "linear"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """Memory of the arrays held, in bytes."""
        n = self.values.nbytes
        if self.points is not None:
            n += self.points.nbytes
        if self.grid is not None:
            n += sum(g.nbytes for g in self.grid)
        return int(n)

    def within(self, lower, upper) -> "DataBlock":
        """The grid lines (a grid) or rows (points) inside [lower, upper] ((d,) each, a
        tolerance of :data:`TOLERANCE` of the box's extent on each side), as a new block;
        e.g. the scoring points of a reference that reaches beyond the domain."""
        lo, hi = grown(lower, upper)
        keep = lambda c, k: (c >= lo[k]) & (c <= hi[k])  # noqa: E731
        if self.kind == "grid":
            masks = [keep(c, k) for k, c in enumerate(self.grid)]
            values = self.values[np.ix_(*masks)]
            return DataBlock(self.kind, self.axes_names, self.fields, self.source, None,
                             values, [c[m] for c, m in zip(self.grid, masks)],
                             self.interpolation)
        rows = np.all([keep(self.points[:, k], k) for k in range(len(lo))], axis=0)
        return DataBlock(self.kind, self.axes_names, self.fields, self.source,
                         self.points[rows], self.values[rows], None, self.interpolation)

    def interpolate(self, x) -> np.ndarray:
        """Values at ``x``.

        Parameters
        ----------
        x : array_like (n, d), in the order of ``axes_names``

        Returns
        -------
        ndarray (n, m) float64

        Raises
        ------
        DataFileError
            naming the file and the first point of ``x`` outside the block's coverage.
        """
        x = np.asarray(x, dtype=np.float64)
        d, m = len(self.axes_names), len(self.fields)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"points to interpolate must have shape (n, {d}), "
                             f"got {x.shape}")
        if len(x) == 0:
            return np.empty((0, m))
        key = self.interpolation
        if key not in self._cache:
            self._cache[key] = (_GridInterpolant(self) if self.kind == "grid"
                                else _PointsInterpolant(self))
        return self._cache[key](x)

    def _outside(self, x, i: int, coverage: str) -> DataFileError:
        """The error for point ``x[i]`` outside ``coverage`` (words)."""
        point = ", ".join(f"{a}={v:.10g}" for a, v in zip(self.axes_names, x[i]))
        return DataFileError(f"data file {self.source!r}: point {i} ({point}) is outside "
                             f"the data read, which covers {coverage}")


def grown(lower, upper) -> tuple:
    """(lower, upper) float64 (d,), each side moved out by :data:`TOLERANCE` of the box's
    extent (at least of 1), so that coordinates on the faces count as inside."""
    lo, hi = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    tol = TOLERANCE * np.maximum(hi - lo, 1.0)
    return lo - tol, hi + tol


def _ranges(names, lo, hi) -> str:
    return ", ".join(f"{a} in [{a0:.10g}, {a1:.10g}]" for a, a0, a1 in zip(names, lo, hi))


def _clip_to_box(block: DataBlock, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 coverage: str) -> np.ndarray:
    """``x`` clipped to [lo, hi]; DataFileError for a point beyond the tolerance."""
    extent = hi - lo
    scale = np.where(extent > 0, extent, np.maximum(np.maximum(abs(lo), abs(hi)), 1.0))
    tol = TOLERANCE * scale
    bad = np.flatnonzero(np.any((x < lo - tol) | (x > hi + tol), axis=1))
    if len(bad):
        raise block._outside(x, int(bad[0]), coverage)
    return np.clip(x, lo, hi)


class _GridInterpolant:
    """RegularGridInterpolator (linear, nearest) or :mod:`~ddpinn.data.local_cubic` (cubic)
    over the axes with more than one coordinate."""

    def __init__(self, block: DataBlock):
        from scipy.interpolate import RegularGridInterpolator

        self.block = block
        self.lo = np.array([g[0] for g in block.grid])
        self.hi = np.array([g[-1] for g in block.grid])
        self.live = [k for k, g in enumerate(block.grid) if len(g) > 1]
        index = tuple(slice(None) if k in self.live else 0 for k in range(len(block.grid)))
        values = block.values[index]
        if self.live and block.interpolation == "cubic":
            grid = [block.grid[k] for k in self.live]
            self.interp = lambda x: local_cubic.interpolate(grid, values, x)
        elif self.live:
            self.interp = RegularGridInterpolator(
                [block.grid[k] for k in self.live], values, method=block.interpolation,
                bounds_error=False, fill_value=None)
        else:
            self.constant = values.reshape(1, -1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        coverage = _ranges(self.block.axes_names, self.lo, self.hi)
        x = _clip_to_box(self.block, x, self.lo, self.hi, coverage)
        if not self.live:
            return np.repeat(self.constant, len(x), axis=0)
        return np.asarray(self.interp(x[:, self.live]), dtype=np.float64)


class _PointsInterpolant:
    """Scattered rows: linear (hull, or piecewise linear on one axis) or nearest."""

    def __init__(self, block: DataBlock):
        self.block = block
        pts = block.points
        if len(pts) == 0:
            self.lo = self.hi = None
            return
        self.lo, self.hi = pts.min(axis=0), pts.max(axis=0)
        self.live = [k for k in range(pts.shape[1]) if self.hi[k] > self.lo[k]]
        live = pts[:, self.live]
        values = block.values
        self.interp = None
        if not self.live:
            self.constant = values[:1]
        elif block.interpolation == "nearest":
            from scipy.spatial import cKDTree

            self.tree, self.tree_values = cKDTree(live), values
        elif len(self.live) == 1:
            order = np.argsort(live[:, 0], kind="stable")
            self.x1, self.v1 = live[order, 0], values[order]
        else:
            from scipy.interpolate import LinearNDInterpolator
            from scipy.spatial import QhullError

            try:
                self.interp = LinearNDInterpolator(live, values, fill_value=np.nan)
            except QhullError as exc:
                raise DataFileError(
                    f"data file {block.source!r}: cannot triangulate its {len(pts)} points "
                    f"for linear interpolation (are they all on a plane or a line?): "
                    f"{str(exc).splitlines()[0]}") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        block = self.block
        if self.lo is None:
            raise block._outside(x, 0, "no point at all (no row of the file is inside the "
                                      "box read)")
        coverage = _ranges(block.axes_names, self.lo, self.hi)
        x = _clip_to_box(block, x, self.lo, self.hi, coverage)
        if not self.live:
            return np.repeat(self.constant, len(x), axis=0)
        xl = x[:, self.live]
        if block.interpolation == "nearest":
            _, nearest = self.tree.query(xl)
            return self.tree_values[nearest]
        if self.interp is None:
            return np.stack([np.interp(xl[:, 0], self.x1, self.v1[:, j])
                             for j in range(self.v1.shape[1])], axis=1)
        out = np.asarray(self.interp(xl), dtype=np.float64)
        bad = np.flatnonzero(np.isnan(out).any(axis=1))
        if len(bad):
            raise block._outside(x, int(bad[0]), f"the convex hull of its {len(block.points)} "
                                                f"points ({coverage})")
        return out

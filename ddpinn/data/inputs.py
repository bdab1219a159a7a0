"""The ``[[data]]`` tables of a case, opened: what the loss, the boundary conditions and the
scoring read from files.

:func:`open_inputs` checks every table and file at set-up (names, columns, coverage), reading
metadata only, and raises one ConfigError naming the field. Values are read later, per rank,
only for the region that rank needs (:meth:`DataInput.block`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ddpinn.data.errors import DataFileError
from ddpinn.data.readers import open_data
from ddpinn.data.source import check_covers
from ddpinn.data.spec import DataSpec, parse_data_tables

# A rank that needs a region reads this fraction of the data's extent more on every side, so
# that points drawn anew each epoch rarely fall outside what it holds.
READ_MARGIN = 0.05
# Bytes of read blocks a rank keeps per table (one block per face group and expert,
# typically): a rank holding many experts must not read its faces again at every resampling.
MAX_KEPT_BYTES = 1 << 30
# A coordinate value shared by at least this share of the points makes them one face group.
FACE_SHARE = 0.05


def face_groups(x: np.ndarray) -> list:
    """Rows of ``x`` (n, d) grouped by the face they lie on: points sharing one exact value
    of a coordinate (at least FACE_SHARE of them) form a group, the rest one more group."""
    left = np.ones(len(x), dtype=bool)
    groups = []
    for axis in range(x.shape[1]):
        values, counts = np.unique(x[left, axis], return_counts=True)
        for v in values[counts >= max(2, FACE_SHARE * len(x))]:
            rows = np.flatnonzero(left & (x[:, axis] == v))
            groups.append(rows)
            left[rows] = False
    if left.any():
        groups.append(np.flatnonzero(left))
    return groups


def resolve_data_path(name: str, base_dir=None) -> Path | None:
    """Where the file ``name`` of a ``[[data]]`` table is: an absolute path, else the case
    file's folder, the working directory, then the data directory (``$DDPINN_DATA``)."""
    from ddpinn.io.reference import data_dir

    path = Path(os.path.expanduser(str(name)))
    if path.is_absolute():
        return path if path.is_file() else None
    for folder in ([Path(base_dir)] if base_dir else []) + [Path.cwd(), data_dir()]:
        if (folder / path).is_file():
            return (folder / path).resolve()
    return None


class DataInput:
    """One ``[[data]]`` table with its file opened (metadata only).

    spec : DataSpec; source : DataSource (its ``fields`` are the outputs it holds)
    """

    def __init__(self, spec: DataSpec, source):
        self.spec, self.source = spec, source
        self._blocks = []  # ((lower, upper), DataBlock) read so far, the newest last

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def outputs(self) -> tuple:
        return tuple(self.source.fields)

    def block(self, lower, upper):
        """The values inside [lower, upper] (d,), read on first need and kept: a later
        region inside a kept one reads nothing. Along an axis where the region is flat (a
        face) it stays flat, so scattered data on that face interpolate within the face."""
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        for (lo, hi), block in self._blocks:
            if np.all(lower >= lo) and np.all(upper <= hi):
                return block
        d_lo, d_hi = self.source.bounds()
        pad = np.where(upper > lower, READ_MARGIN * (d_hi - d_lo), 0.0)
        lower, upper = np.maximum(lower - pad, d_lo), np.minimum(upper + pad, d_hi)
        block = self.source.read_box(lower, upper)
        self._blocks.append(((lower, upper), block))
        while len(self._blocks) > 1 and \
                sum(b.nbytes for _, b in self._blocks) > MAX_KEPT_BYTES:
            self._blocks.pop(0)  # the oldest first; the newest is always kept
        return block

    def values_at(self, x: np.ndarray, output: str) -> np.ndarray:
        """Interpolated values of ``output`` at x (n, d) -> (n,); the points of each face
        (a coordinate shared by many of them) are interpolated from that face's data."""
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros(len(x))
        column = self.outputs.index(output)
        for rows in face_groups(x):
            part = x[rows]
            block = self.block(part.min(axis=0), part.max(axis=0))
            out[rows] = block.interpolate(part)[:, column]
        return out

    def nbytes_for(self, lower, upper) -> int:
        """Memory of the values a rank holds for the region [lower, upper]."""
        return int(self.source.estimate_bytes(np.asarray(lower, float),
                                              np.asarray(upper, float)))


def check_reaches(source, lower, upper, names) -> None:
    """DataFileError when no point of the data lies inside the box [lower, upper] (d,)."""
    lo, hi = source.overlap(lower, upper)
    if np.all(lo <= hi) and source.count_box(lo, hi) > 0:
        return
    d_lo, d_hi = source.bounds()
    held = ", ".join(f"{a} in [{a0:.6g}, {a1:.6g}]" for a, a0, a1 in zip(names, d_lo, d_hi))
    box = ", ".join(f"{a} in [{a0:.6g}, {a1:.6g}]" for a, a0, a1 in zip(names, lower, upper))
    raise DataFileError(f"data file {str(source.path)!r} has no point inside the domain "
                        f"({box}); its data lie in {held}")


def open_inputs(tables, pde, box, base_dir=None) -> dict:
    """``[[data]]`` tables -> {name: DataInput}; raises ConfigError naming the field.

    Checks what can be checked before training: the table's keys, that the file exists and
    has the columns, that boundary data cover the domain (``box``) and that reference data
    have points inside it.
    """
    from ddpinn.io.config_errors import ConfigError

    if not tables:
        return {}
    try:
        specs = parse_data_tables(tables, tuple(pde.axes), tuple(pde.outputs))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = {}
    for i, spec in enumerate(specs):
        where = f"data.{i}"
        path = resolve_data_path(spec.file, base_dir)
        if path is None:
            raise ConfigError(f"field '{where}.file' = {spec.file!r}: no such file (looked "
                              f"beside the case file, in the working directory and in the "
                              f"data directory)")
        axes = {a: spec.axes.get(a, a) for a in pde.axes}
        try:
            source = open_data(path, axes, dict(spec.fields), tuple(pde.outputs),
                               interpolation=spec.interpolation)
            lower, upper = np.asarray(box.lower, float), np.asarray(box.upper, float)
            if spec.use == "boundary":  # interpolated anywhere on the boundary
                check_covers(source, lower, upper, "the domain")
            elif spec.use == "reference":  # scored at its points inside the domain
                check_reaches(source, lower, upper, box.names)
        except DataFileError as exc:
            raise ConfigError(f"field '{where}.file': {exc}") from None
        out[spec.name] = DataInput(spec, source)
    return out

"""CSV point lists, read in chunks of lines (never the whole file at once).

The first line that is neither blank nor starts with ``#`` names the columns; every later
line that is neither blank nor a ``#`` comment is one point, comma separated, with one value
per column. An empty value counts as missing.
"""
from __future__ import annotations

import csv

import numpy as np

from ddpinn.data.points_source import CHUNK_ROWS, PointsSource


class CsvPoints(PointsSource):
    """A CSV point list (see the module docstring)."""

    def __init__(self, path, axes: dict, fields: dict, outputs: tuple, interpolation: str):
        super().__init__(path, axes, interpolation)
        self.header, self.header_line, has_rows = self._read_header()
        self.require(list(self.file_axes.values()), self.header, "column")
        self.resolve_fields(fields, outputs, self.header, "column")
        if not has_rows:
            raise self.error(f"holds no rows of data under its header (line "
                             f"{self.header_line})")
        self._axis_cols = [self.header.index(n) for n in self.file_axes.values()]
        self._field_cols = [self.header.index(n) for n in self.file_fields.values()]

    def _lines(self, fh):
        """(line number, text) of the lines that are neither blank nor comments."""
        for number, raw in enumerate(fh, 1):
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error(f"line {number} is not UTF-8 text") from None
            stripped = text.strip()
            if stripped and not stripped.startswith("#"):
                yield number, text

    def _open(self):
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise self.error(f"cannot be read: {exc.strerror or exc}") from None

    def _read_header(self):
        """(column names, header line number, whether a data line follows)."""
        before = self.bytes_read
        with self._open() as fh:
            lines = self._lines(fh)
            first = next(lines, None)
            if first is None:
                raise self.error("is empty: a CSV data file needs a header line of column "
                                 "names and one line per point")
            number, text = first
            header = [h.strip() for h in next(csv.reader([text]))]
            has_rows = next(lines, None) is not None
        self.bytes_read = before
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise self.error(f"column {dupes[0]!r} appears twice in the header (line "
                             f"{number})")
        return header, number, has_rows

    def chunks(self):
        with self._open() as fh:
            lines = self._lines(fh)
            next(lines)  # the header
            while True:
                block = [item for _, item in zip(range(CHUNK_ROWS), lines)]
                if not block:
                    return
                yield self._parse(block)
                if len(block) < CHUNK_ROWS:
                    return

    def _parse(self, block):
        numbers = np.array([n for n, _ in block], dtype=np.int64)
        rows = list(csv.reader(text for _, text in block))
        width = len(self.header)
        for number, row in zip(numbers, rows):
            if len(row) != width:
                raise self.error(f"line {number} has {len(row)} values but the header names "
                                 f"{width} columns")

        def where(j):
            return f"on line {int(numbers[j])}"

        def columns(cols, chosen):
            out = np.empty((len(chosen), len(cols)))
            for c, k in enumerate(cols):
                out[:, c] = self._numbers([rows[i][k] for i in chosen], k, numbers[chosen])
            return out

        xyz = columns(self._axis_cols, np.arange(len(rows)))
        return xyz, where, lambda mask: columns(self._field_cols, np.flatnonzero(mask))

    def _numbers(self, texts, k: int, numbers) -> np.ndarray:
        """Column ``k`` of some rows as float64; an empty value is NaN."""
        texts = [t.strip() or "nan" for t in texts]
        try:
            return np.array(texts).astype(np.float64) if texts else np.empty(0)
        except ValueError:
            for text, number in zip(texts, numbers):
                try:
                    float(text)
                except ValueError:
                    raise self.error(f"line {number}, column {self.header[k]!r}: {text!r} is "
                                     f"not a number") from None
            raise self.error(f"column {self.header[k]!r} holds a value that is not a "
                             f"number") from None

"""Metrics file: one JSON object per step (JSON lines), written by rank 0."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ddpinn.io.atomic import atomic_write_text


class MetricsWriter:
    """Appends reduced metrics to ``path`` on rank 0; other ranks write nothing.

    Each line is flushed and fsynced, so a killed job keeps every step it recorded.
    """

    def __init__(self, path, comm):
        self.path = Path(path)
        self.rank = comm.rank

    def write(self, row: dict) -> None:
        if self.rank != 0:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def truncate(self, step: int) -> None:
        """Drop lines of steps >= ``step`` (recorded after the checkpoint being resumed)."""
        if self.rank != 0 or not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] < step]
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))


def read_metrics(path) -> list:
    """All rows of a metrics file."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]

"""Metrics file: one JSON object per step (JSON lines), written by rank 0."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ddpinn.io.atomic import atomic_write_text

log = logging.getLogger("ddpinn")


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
        """Drop lines of steps >= ``step`` (recorded after the checkpoint being resumed), and
        any line a killed job left torn."""
        if self.rank != 0 or not self.path.exists():
            return
        keep = [row for row in read_metrics(self.path) if row["step"] < step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in keep))


def parse_row(line: str) -> dict | None:
    """One metrics line as a dict with an integer ``step``, or None if it is not one."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) else None
    if not isinstance(step, (int, float)) or isinstance(step, bool):
        return None
    row["step"] = int(step)
    return row


def read_metrics(path) -> list:
    """The rows of a metrics file, in file order.

    A line that is not a JSON object with a ``step`` (a job killed while writing it leaves
    its last line torn) is dropped with a warning naming the file and the line."""
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = parse_row(line)
            if row is None:
                bad.append(number)
            else:
                rows.append(row)
    if bad:
        log.warning("%s: dropped %d unreadable line(s) (line %s), e.g. cut short by a killed "
                    "job", path, len(bad), ", ".join(map(str, bad[:5])))
    return rows

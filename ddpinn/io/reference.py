"""Reference solutions read from data files (never shipped with ddpinn).

The data directory is ``$DDPINN_DATA`` if set, else ``../shared/data`` beside the project's
root (where the project's checkout keeps third-party data), else ``./data``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Reference:
    """Reference values on a tensor grid.

    axes : list of ndarray, one 1D array per axis
    values : ndarray, shape (len(axes[0]), ..., n_out)
    source : str
    """

    axes: list
    values: np.ndarray
    source: str


def data_dir() -> Path:
    env = os.environ.get("DDPINN_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return here.resolve() if here.exists() else Path("data")


def find(name: str) -> Path | None:
    """Path of reference file ``name``, or None when absent."""
    path = data_dir() / name
    return path if path.is_file() else None


def load_comsol_xt(path) -> Reference:
    """A COMSOL text export: first column x, then one column per time.

    Times are read from the last ``%`` header line (``... @ t=0.1 ...``).
    """
    times, rows = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("%"):
                if "@ t=" in line:
                    times = [float(tok.split()[0]) for tok in line.split("@ t=")[1:]]
            elif line.strip():
                rows.append([float(v) for v in line.split()])
    data = np.asarray(rows)
    if not times or data.shape[1] != len(times) + 1:
        raise ValueError(f"{path}: expected x plus one column per time in the header")
    return Reference([data[:, 0], np.asarray(times)], data[:, 1:, None], str(path))


LOADERS = {"pinnacle_burgers1d.dat": load_comsol_xt}


def load(name: str) -> Reference | None:
    """Load a known reference file by name; None when the file is absent."""
    path = find(name)
    return LOADERS[name](path) if path else None

"""Reader of global-diagnostics files (``.gdiag``): time series of a periodic-box DNS.

Whitespace-separated columns time, kinetic energy E, dissipation rate -dE/dt, enstrophy;
lines starting with ``#`` are headers. The file shipped beside the project is the 3D
Taylor-Green vortex at Re = 1600 from a 512^3 spectral DNS (``TGV_RE1600_GDIAG``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddpinn.io import reference as reference_data

TGV_RE1600_GDIAG = "tgv3d_re1600_spectral512.gdiag"
COLUMNS = ("time", "energy", "dissipation", "enstrophy")


@dataclass
class GlobalDiagnostics:
    """Time series, each (nt,): time, energy, dissipation (-dE/dt), enstrophy; and the source."""

    time: np.ndarray
    energy: np.ndarray
    dissipation: np.ndarray
    enstrophy: np.ndarray
    source: str


def read_gdiag(path=None) -> GlobalDiagnostics:
    """Read a ``.gdiag`` file; by default the Re = 1600 Taylor-Green file of the data directory.

    Raises
    ------
    FileNotFoundError
        The file is absent (the message says where it was looked for).
    ValueError
        A line is not four numbers, or the times are not increasing.
    """
    if path is None:
        path = reference_data.find(TGV_RE1600_GDIAG)
        if path is None:
            raise FileNotFoundError(
                f"reference file {TGV_RE1600_GDIAG!r} not found in "
                f"{reference_data.data_dir()}; set DDPINN_DATA to the directory holding it")
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"reference file {str(path)!r} does not exist")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            try:
                values = [float(v) for v in parts]
            except ValueError:
                values = []
            if len(values) != len(COLUMNS):
                raise ValueError(f"{path}:{number}: expected {len(COLUMNS)} numbers "
                                 f"({', '.join(COLUMNS)}), got {text[:80]!r}")
            rows.append(values)
    data = np.asarray(rows, dtype=np.float64).reshape(-1, len(COLUMNS))
    if len(data) < 2 or np.any(np.diff(data[:, 0]) <= 0):
        raise ValueError(f"{path}: needs at least two rows with increasing times")
    return GlobalDiagnostics(*(data[:, i] for i in range(len(COLUMNS))), source=str(path))

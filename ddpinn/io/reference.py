"""Reference solutions read from data files (never shipped with ddpinn).

The data directory is ``$DDPINN_DATA`` if set, else ``../shared/data`` beside the project's
root (where the project's checkout keeps third-party data), else ``./data``.

A PDE names its reference with ``reference`` (:meth:`ddpinn.pdes.PDE.load_reference`): a
file of the data directory or an absolute path, read by :func:`load_file`:

- ``.csv`` (comma-separated) or ``.dat`` / ``.txt`` (whitespace-separated), a header line
  naming the columns (a leading ``#`` or ``%`` is allowed): one column per axis of the
  problem (``x``, ``y``, ``z``, ``t``) and one per output, any order, extra columns ignored;
  one row per point (scattered points);
- ``.nc`` (NetCDF): one 1D coordinate variable per axis and one variable per output on
  those dimensions (a tensor grid), as ``solution.nc`` of a run;
- the files of shipped families by name (``pinnacle_burgers1d.dat``: COMSOL text export).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Reference:
    """Reference values on a tensor grid, or at scattered points.

    axes : list of ndarray, one 1D array per axis (space axes, then t), or None for
        scattered points
    values : ndarray, shape (len(axes[0]), ..., n_out) on a grid, (P, n_out) at points
    source : str, what the reference is (a path), for the run's records
    points : ndarray (P, d) or None, the scattered points (``axes`` is then None)
    """

    axes: list | None
    values: np.ndarray
    source: str
    points: np.ndarray | None = None

    @property
    def scattered(self) -> bool:
        return self.points is not None


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
TEXT_SUFFIXES = (".csv", ".dat", ".txt")
SUFFIXES = TEXT_SUFFIXES + (".nc",)


def load(name: str) -> Reference | None:
    """Load a known reference file by name; None when the file is absent."""
    path = find(name)
    return LOADERS[name](path) if path else None


def resolve(name, pde_name: str = "") -> Path | None:
    """Path of the reference ``name`` of a PDE: an absolute path, or a file of the data
    directory. None for an absent file of a shipped family (it trains without errors).

    Raises ValueError for a file that does not exist or has no known format.
    """
    name = str(name)
    if name in LOADERS:
        return find(name)
    path = Path(name).expanduser()
    path = path if path.is_absolute() else data_dir() / path
    who = f"PDE {pde_name!r}" if pde_name else "the PDE"
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"reference {name!r} of {who} has no known format: use a "
                         f"{', '.join(SUFFIXES)} file, or override load_reference()")
    if not path.is_file():
        raise ValueError(f"reference {name!r} of {who} not found: no file {str(path)!r} "
                         f"(a relative name is looked up in the data directory "
                         f"{str(data_dir())!r}: $DDPINN_DATA, else ../shared/data beside "
                         f"the project, else ./data; or give an absolute path)")
    return path


def load_file(name, pde) -> Reference | None:
    """The reference ``name`` of ``pde`` (see the module docstring for the formats).

    Raises ValueError naming the file and what is wrong with it.
    """
    path = resolve(name, pde.name)
    if path is None:
        return None
    if str(name) in LOADERS:
        return LOADERS[str(name)](path)
    axes = list(pde.axes)
    if path.suffix.lower() == ".nc":
        return _load_netcdf(path, axes, list(pde.outputs))
    return _load_table(path, axes, list(pde.outputs))


def _load_table(path: Path, axes: list, outputs: list) -> Reference:
    comma = path.suffix.lower() == ".csv"
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().strip().lstrip("#%").strip()
        names = [n.strip() for n in (header.split(",") if comma else header.split())]
        try:
            data = np.loadtxt(fh, delimiter="," if comma else None, ndmin=2,
                              comments=("#", "%"))
        except ValueError as exc:
            raise ValueError(f"reference file {str(path)!r}: not a table of numbers under "
                             f"the header line: {exc}") from None
    missing = [n for n in axes + outputs if n not in names]
    if missing:
        raise ValueError(f"reference file {str(path)!r}: its header line {header!r} has no "
                         f"column {', '.join(map(repr, missing))}; it needs one column per "
                         f"axis ({', '.join(axes)}) and per output ({', '.join(outputs)})")
    if data.shape[0] == 0 or data.shape[1] != len(names):
        raise ValueError(f"reference file {str(path)!r}: expected rows of {len(names)} "
                         f"numbers (one per header name), got shape {data.shape}")
    col = {n: i for i, n in enumerate(names)}
    points = data[:, [col[n] for n in axes]]
    values = data[:, [col[n] for n in outputs]]
    if not np.isfinite(data).all():
        raise ValueError(f"reference file {str(path)!r} holds values that are not finite")
    return Reference(None, values, str(path), points)


def _load_netcdf(path: Path, axes: list, outputs: list) -> Reference:
    import netCDF4

    try:
        ds = netCDF4.Dataset(str(path), "r")
    except OSError as exc:
        raise ValueError(f"reference file {str(path)!r} is not a readable NetCDF file: "
                         f"{exc}") from None
    with ds:
        ds.set_auto_mask(False)
        missing = [n for n in axes + outputs if n not in ds.variables]
        if missing:
            raise ValueError(f"reference file {str(path)!r} has no variable "
                             f"{', '.join(map(repr, missing))}; it needs one coordinate per "
                             f"axis ({', '.join(axes)}) and one variable per output "
                             f"({', '.join(outputs)}) on dimensions ({', '.join(axes)})")
        grid = [np.asarray(ds.variables[a][:], dtype=float).ravel() for a in axes]
        values = []
        for n in outputs:
            var = ds.variables[n]
            if tuple(var.dimensions) != tuple(axes):
                raise ValueError(f"reference file {str(path)!r}: variable {n!r} has "
                                 f"dimensions {tuple(var.dimensions)}, expected {tuple(axes)}")
            values.append(np.asarray(var[:], dtype=float))
    return Reference(grid, np.stack(values, axis=-1), str(path))

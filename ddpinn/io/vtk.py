"""Solutions on a tensor grid -> VTK XML files for ParaView and VisIt.

A space grid becomes one image-data file ``solution.vti`` (uniform axes: origin and spacing)
or one rectilinear-grid file ``solution.vtr`` (an axis with uneven steps). A space-time grid
becomes one such file per time sample, ``vtk/solution_<k:04d>.vti``, and a ParaView
collection ``solution.pvd`` that lists them with their times: opening it in ParaView gives
the time series. 1D and 2D grids are 3D data sets of one point across the missing axes,
dimensions ``(n, 1, 1)`` and ``(nx, ny, 1)``.

Each output is a float64 point-data array. In a non-box domain the points outside hold NaN
and are hidden by the ``vtkGhostType`` point array (``HIDDENPOINT``), which ParaView honours;
an ``inside`` uint8 array (1 inside, 0 outside) is written too.

The ``vtk`` package is imported inside the functions: ddpinn works without it, and
:func:`vtk_available` tells whether it is there. Files are written atomically. Only rank 0
writes; nothing here is collective.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Optional, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from ddpinn.io.atomic import atomic_output, atomic_write_text

STEM = "solution"
COLLECTION = "solution.pvd"
SERIES_DIR = "vtk"
#: Relative tolerance on the steps of an axis written as image data (else rectilinear).
UNIFORM_RTOL = 1e-9
_SERIES_FILE = re.compile(rf"{STEM}_\d{{4,}}\.(vti|vtr)")


def vtk_available() -> bool:
    """Whether the ``vtk`` package (its XML writers) can be imported."""
    try:
        for module in ("vtkmodules.vtkCommonDataModel", "vtkmodules.vtkIOXML"):
            importlib.import_module(module)
    except (ImportError, OSError):
        return False
    return True


def write_vtk(directory, names: Sequence[str], axes: Sequence[np.ndarray],
              outputs: Sequence[str], values: np.ndarray, time_axis: Optional[int] = None,
              inside: Optional[np.ndarray] = None) -> list:
    """Write a solution on a tensor grid as VTK XML files in ``directory``.

    Parameters
    ----------
    directory : str or Path
        Where the files go (it must exist); a time series adds the subfolder ``vtk/``.
    names : sequence of str, length ``D``
        Axis names in the case's order, e.g. ``("x", "y", "t")``.
    axes : sequence of D 1D arrays
        Grid coordinates per axis, shapes ``(n_0,)``, ..., ``(n_{D-1},)``, strictly
        monotonic (a decreasing axis is written increasing).
    outputs : sequence of str, length ``m``
        Output names, one point-data array each.
    values : ndarray, shape ``(P, m)``, ``P = n_0 * ... * n_{D-1}``
        The outputs at the grid's points in C order of the axes (the last axis fastest).
    time_axis : int or None
        Index of the time axis in ``names``; None for a space-only grid.
    inside : bool ndarray, shape ``(P,)``, optional
        True at the points inside a non-box domain; the others are NaN and hidden.

    Returns
    -------
    list of Path
        The file to open first (``solution.vti``, ``solution.vtr`` or ``solution.pvd``),
        then the per-time files of a time series.

    Raises
    ------
    ValueError
        Inconsistent names, axes, shapes, or more than 3 space axes; nothing is written.
    ImportError
        The ``vtk`` package is not installed.
    """
    directory = Path(directory)
    coords, data, mask = _check(names, axes, outputs, values, time_axis, inside)
    space = [a for a in range(len(coords)) if a != time_axis]
    uniform = all(_is_uniform(coords[a]) for a in space)
    ext = "vti" if uniform else "vtr"
    if time_axis is None:
        path = directory / f"{STEM}.{ext}"
        _write_one(path, [coords[a] for a in space], outputs, data, mask, None)
        return [path]
    (directory / SERIES_DIR).mkdir(exist_ok=True)
    files, entries = [], []
    for k, t in enumerate(coords[time_axis]):
        path = directory / SERIES_DIR / f"{STEM}_{k:04d}.{ext}"
        _write_one(path, [coords[a] for a in space], outputs,
                   np.take(data, k, axis=time_axis),
                   None if mask is None else np.take(mask, k, axis=time_axis), float(t))
        files.append(path)
        entries.append((float(t), f"{SERIES_DIR}/{path.name}"))
    _remove_stale(directory / SERIES_DIR, {p.name for p in files})
    collection = directory / COLLECTION
    atomic_write_text(collection, pvd_text(entries))
    return [collection] + files


def pvd_text(entries) -> str:
    """A ParaView collection (``.pvd``) listing ``(time, relative file name)`` entries."""
    rows = "".join(f'    <DataSet timestep="{t!r}" group="" part="0" file={quoteattr(f)}/>\n'
                   for t, f in entries)
    return ('<?xml version="1.0"?>\n'
            '<VTKFile type="Collection" version="0.1" byte_order="LittleEndian">\n'
            f'  <Collection>\n{rows}  </Collection>\n</VTKFile>\n')


# ------------------------------------------------------------------------------- internals

def _check(names, axes, outputs, values, time_axis, inside):
    """Checked coordinates (increasing), values ``(n_0, ..., n_{D-1}, m)`` with NaN outside
    and the mask ``(n_0, ..., n_{D-1})`` or None; ValueError naming what is wrong."""
    names = [str(n) for n in names]
    if len(axes) != len(names) or not names:
        raise ValueError(f"{len(names)} axis names {names} but {len(axes)} axes")
    if time_axis is not None and not 0 <= time_axis < len(names):
        raise ValueError(f"time_axis {time_axis} is not an axis of {names}")
    n_space = len(names) - (time_axis is not None)
    if not 1 <= n_space <= 3:
        raise ValueError(f"VTK data sets have 1 to 3 space axes; the grid {names} has "
                         f"{n_space}")
    coords = [np.asarray(a, dtype=np.float64) for a in axes]
    flips = []
    for name, c in zip(names, coords):
        steps = np.diff(c)
        if c.ndim != 1 or not c.size or not np.all(np.isfinite(c)) or \
                not (np.all(steps > 0) or np.all(steps < 0)):
            raise ValueError(f"axis {name!r}: coordinates must be a non-empty 1D array, finite "
                             f"and strictly monotonic")
        flips.append(bool(c.size > 1 and steps[0] < 0))
    shape = tuple(len(c) for c in coords)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (int(np.prod(shape)), len(outputs)):
        raise ValueError(f"values have shape {values.shape}; a grid of shape {shape} with "
                         f"outputs {list(outputs)} needs ({int(np.prod(shape))}, "
                         f"{len(outputs)})")
    data = values.reshape(shape + (len(outputs),)).copy()
    mask = None
    if inside is not None:
        mask = np.asarray(inside, dtype=bool)
        if mask.shape != (data[..., 0].size,):
            raise ValueError(f"inside has shape {mask.shape}; the grid needs "
                             f"({data[..., 0].size},)")
        mask = mask.reshape(shape)
        data[~mask] = np.nan
    for a, flip in enumerate(flips):
        if flip:
            coords[a] = coords[a][::-1]
            data = np.flip(data, axis=a)
            mask = None if mask is None else np.flip(mask, axis=a)
    return coords, data, mask


def _is_uniform(c: np.ndarray) -> bool:
    if c.size < 3:
        return True
    steps = np.diff(c)
    return bool(np.all(np.abs(steps - steps[0]) <= UNIFORM_RTOL * abs(steps[0])))


def _vtk_order(a: np.ndarray) -> np.ndarray:
    """An array on the space grid ``(n_x[, n_y[, n_z]])`` as VTK's point order (x fastest)."""
    return np.ascontiguousarray(a.reshape(-1, order="F"))


def _write_one(path: Path, coords: list, outputs, data: np.ndarray,
               mask: Optional[np.ndarray], time: Optional[float]) -> None:
    """One data set: space coordinates (1 to 3 axes), data ``(n_x, ..., m)``, mask or None."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkDataSetAttributes

    grid, writer = _data_set(coords, path.suffix == ".vti")
    point_data = grid.GetPointData()
    keep = []  # numpy buffers the VTK arrays point into, alive until written

    def add(name, array, kind):
        flat = _vtk_order(array).astype(kind)
        keep.append(flat)
        vtk_array = numpy_to_vtk(flat, deep=False)
        vtk_array.SetName(name)
        point_data.AddArray(vtk_array)
        return vtk_array

    for j, name in enumerate(outputs):
        add(str(name), data[..., j], np.float64)
    if mask is not None:
        add("inside", mask, np.uint8)
        ghost = np.where(mask, 0, vtkDataSetAttributes.HIDDENPOINT)
        add(vtkDataSetAttributes.GhostArrayName(), ghost, np.uint8)
    if time is not None:
        stamp = numpy_to_vtk(np.array([time], dtype=np.float64), deep=True)
        stamp.SetName("TimeValue")  # ParaView reads a lone file's time from this
        grid.GetFieldData().AddArray(stamp)
    if outputs:
        point_data.SetActiveScalars(str(outputs[0]))
    with atomic_output(path) as tmp:
        writer.SetFileName(tmp)
        writer.SetInputData(grid)
        writer.SetDataModeToAppended()
        writer.EncodeAppendedDataOff()
        writer.SetCompressorTypeToZLib()
        writer.SetHeaderTypeToUInt64()  # blocks over 4 GiB
        if writer.Write() != 1 or not os.path.exists(tmp):
            raise OSError(f"VTK could not write {str(path)!r}")


def _data_set(coords: list, uniform: bool):
    """An empty vtkImageData or vtkRectilinearGrid over the coordinates, and its writer."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData, vtkRectilinearGrid
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter, vtkXMLRectilinearGridWriter

    full = list(coords) + [np.zeros(1)] * (3 - len(coords))
    dims = [len(c) for c in full]
    if uniform:
        grid = vtkImageData()
        grid.SetDimensions(*dims)
        grid.SetOrigin(*[float(c[0]) for c in full])
        grid.SetSpacing(*[float(c[1] - c[0]) if len(c) > 1 else 1.0 for c in full])
        return grid, vtkXMLImageDataWriter()
    grid = vtkRectilinearGrid()
    grid.SetDimensions(*dims)
    setters = (grid.SetXCoordinates, grid.SetYCoordinates, grid.SetZCoordinates)
    for setter, c in zip(setters, full):
        setter(numpy_to_vtk(np.ascontiguousarray(c, dtype=np.float64), deep=True))
    return grid, vtkXMLRectilinearGridWriter()


def _remove_stale(folder: Path, current: set) -> None:
    """Per-time files of an earlier, longer series (a rerun in the same directory)."""
    for p in folder.iterdir():
        if p.is_file() and _SERIES_FILE.fullmatch(p.name) and p.name not in current:
            p.unlink()


__all__ = ["write_vtk", "vtk_available", "pvd_text", "COLLECTION", "SERIES_DIR"]

"""Opening a data file: its format told by its first bytes, then the reader of that format
(:class:`~ddpinn.data.csv_points.CsvPoints`, :func:`open_netcdf`)
returns a :class:`~ddpinn.data.source.DataSource`."""
from __future__ import annotations

from pathlib import Path

from ddpinn.data.csv_points import CsvPoints
from ddpinn.data.errors import DataFileError
from ddpinn.data.netcdf_grid import NetcdfGrid
from ddpinn.data.netcdf_source import NetcdfPoints, describe
from ddpinn.data.source import DataSource
from ddpinn.data.spec import INTERPOLATIONS
from ddpinn.io import points_file

def file_format(path) -> str:
    """``"netcdf"`` or ``"csv"`` (:func:`ddpinn.io.points_file.file_format`); DataFileError if
    the file cannot be read."""
    try:
        return points_file.file_format(path)
    except points_file.PointsFileError as exc:
        raise DataFileError(str(exc).replace("points file", "data file")) from None


def open_data(path, axes: dict, fields: dict, outputs: tuple = (),
              interpolation: str = "linear") -> DataSource:
    """Open a data file, reading its metadata only.

    Parameters
    ----------
    path : str or Path
    axes : dict case axis -> column/coordinate variable name in the file, in the case's axis
        order (``{"x": "x", "t": "time"}``)
    fields : dict output -> column/variable name in the file; {} = every name of ``outputs``
        that the file has (at least one)
    outputs : tuple of str, the PDE's outputs; the fields are kept in this order
    interpolation : str, ``"linear"``, ``"nearest"`` or ``"cubic"`` (grids only), given to
        the blocks read

    Returns
    -------
    DataSource, of kind ``"points"`` or ``"grid"``

    Raises
    ------
    DataFileError
        An unreadable or empty file, a missing column or variable (those available are
        listed), a grid variable whose dimensions are not the mapped axes, a dimension
        without coordinate variable, point variables of different lengths, cubic
        interpolation of scattered points.
    """
    if not axes:
        raise ValueError("open_data needs at least one axis")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r}: must be one of "
                         f"{', '.join(INTERPOLATIONS)}")
    path = Path(path)
    if file_format(path) == "csv":
        source = CsvPoints(path, dict(axes), dict(fields), tuple(outputs), interpolation)
    else:
        source = open_netcdf(path, dict(axes), dict(fields), tuple(outputs), interpolation)
    if interpolation == "cubic" and source.kind != "grid":
        raise DataFileError(f"data file {str(path)!r}: interpolation = 'cubic' needs gridded "
                            f"data (NetCDF variables on one dimension per axis), and this file "
                            f"holds scattered points: use 'linear' or 'nearest'")
    return source


def open_netcdf(path, axes: dict, fields: dict, outputs: tuple, interpolation: str):
    """A :class:`~ddpinn.data.netcdf_source.NetcdfPoints` or :class:`~ddpinn.data.netcdf_grid.NetcdfGrid`
    (see :func:`ddpinn.data.open_data`)."""
    meta = describe(path)
    probe = DataSource(path, axes, interpolation)
    probe.resolve_fields(fields, outputs, meta.variables, "variable")
    dims = [meta.variables[n][0] for n in probe.file_fields.values()]
    axis_dims = tuple(axes.values())
    grid = (any(len(d) != 1 for d in dims)
            or (len(axes) == 1 and all(d == axis_dims for d in dims)))
    cls = NetcdfGrid if grid else NetcdfPoints
    return cls(path, axes, probe.file_fields, outputs, interpolation, meta)

"""Point and gridded data read from files: observations for inverse problems, boundary and
initial data interpolated from a simulation, reference solutions.

- :mod:`ddpinn.data.spec`: the ``[[data]]`` tables of a case file (:func:`parse_data_tables`);
- :mod:`ddpinn.data.source`: :func:`open_data` (CSV and NetCDF point lists, NetCDF grids),
  reading by boxes, :func:`check_covers`;
- :mod:`ddpinn.data.block`: :class:`DataBlock`, a part read, and its interpolation.

Nothing here is collective: every rank opens the file and reads the box it needs.
"""
from ddpinn.data.block import DataBlock
from ddpinn.data.errors import DataFileError
from ddpinn.data.readers import open_data
from ddpinn.data.source import DataSource, check_covers
from ddpinn.data.spec import INTERPOLATIONS, USES, DataSpec, parse_data_tables

__all__ = ["DataSpec", "USES", "INTERPOLATIONS", "parse_data_tables", "DataFileError",
           "open_data", "DataSource", "DataBlock", "check_covers"]

"""The error of a data file that cannot be used (apart from :mod:`ddpinn.data.source`, which
re-exports it, so that :mod:`ddpinn.data.block` raises it without importing the readers)."""
from __future__ import annotations


class DataFileError(ValueError):
    """A data file that cannot be used; the message names the file and the problem."""

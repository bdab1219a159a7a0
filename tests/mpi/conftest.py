"""The mpi tests' helpers (:mod:`tests.helpers`), and ``HERE``, the folder of their files."""
from __future__ import annotations

from tests.helpers import (MPI_TESTS, ROOT, check, losses, metric_rows, mpiexec,  # noqa: F401
                           run_case, run_mpi)

HERE = MPI_TESTS

__all__ = ["HERE", "ROOT", "check", "losses", "mpiexec", "run_case", "run_mpi"]

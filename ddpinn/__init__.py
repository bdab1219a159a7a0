"""ddpinn: domain-decomposed physics-informed neural networks on MPI clusters.

Importing ddpinn never initialises MPI; only :mod:`ddpinn.parallel` touches mpi4py,
and only when a communicator is asked for.
"""

__version__ = "0.1.0"

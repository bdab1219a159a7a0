"""The only package that imports mpi4py, horovod or torch.distributed."""
from ddpinn.parallel.comm import Comm, SerialComm, world

__all__ = ["Comm", "SerialComm", "world"]

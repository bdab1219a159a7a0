"""Communicator wrapper: one object owns the MPI communicator.

Everything outside :mod:`ddpinn.parallel` receives a :class:`Comm` (or :class:`SerialComm`)
as an argument; nothing creates ``COMM_WORLD`` at import time.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from ddpinn.parallel.timing import StepTimes


class SerialComm:
    """A one-process stand-in with the same interface as :class:`Comm`."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    yield_waits = False  # give the core away while waiting for messages (set_threads)

    @property
    def times(self) -> StepTimes:
        """Time spent in this rank's exchange waits and allreduces (and, measured by the
        solver, its compute), reset at every training step."""
        if "_times" not in self.__dict__:
            self._times = StepTimes()
        return self._times

    def allreduce(self, value, op: str = "sum"):
        return value

    def allreduce_tensor_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def bcast(self, obj, root: int = 0):
        return obj

    def gather(self, obj, root: int = 0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def node_allgather(self, obj):
        return [obj]

    def barrier(self) -> None:
        pass

    def post_exchange(self, sends: dict, recv_shapes: dict, dtype, tag: int = 7):
        """Point-to-point exchange; with one process there is nobody to talk to."""
        if sends or recv_shapes:
            raise RuntimeError("SerialComm cannot exchange with other ranks")
        return None

    def wait_exchange(self, handle) -> dict:
        return {}

    def split(self, color: int, key: int):
        """Collective. Sub-communicator of the ranks with the same ``color``, ordered by
        ``key``; with one process, this process alone."""
        return SerialComm()

    def abort(self, code: int = 1) -> None:
        os._exit(code)


class Comm(SerialComm):
    """Wraps an ``mpi4py`` communicator.

    Parameters
    ----------
    mpi_comm : mpi4py.MPI.Comm
    """

    def __init__(self, mpi_comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        # Node-local rank chooses the GPU and the CPU thread count.
        self.node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.node.Get_rank()
        self.local_size = self.node.Get_size()

    _OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}

    #: Seconds between tests of a yielding wait: short against a step (milliseconds), long
    #: enough for the scheduler to run the rank this one waits for.
    YIELD_SLEEP = 50e-6

    def _complete(self, requests: list) -> None:
        """Wait for ``requests``: MPI's busy wait, or tests with the core given away between
        them when ``yield_waits`` (ranks outnumber cores; see ``set_threads``)."""
        if not self.yield_waits:
            self._MPI.Request.Waitall(requests)
            return
        while not self._MPI.Request.Testall(requests):
            time.sleep(self.YIELD_SLEEP)

    def allreduce(self, value, op: str = "sum"):
        """Collective. Reduce a Python scalar or numpy array across all ranks."""
        mpi_op = getattr(self._MPI, self._OPS[op])
        with self.times.measure("allreduce"):
            if isinstance(value, np.ndarray):
                out = np.empty_like(value)
                self._complete([self.mpi.Iallreduce(np.ascontiguousarray(value), out,
                                                    op=mpi_op)])
                return out
            return self.mpi.allreduce(value, op=mpi_op)

    def allreduce_tensor_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective. In-place sum of a tensor across ranks (via host memory)."""
        host = tensor.detach().to("cpu").contiguous()
        with self.times.measure("allreduce"):
            self._complete([self.mpi.Iallreduce(self._MPI.IN_PLACE, host.numpy(),
                                                op=self._MPI.SUM)])
        if host.data_ptr() != tensor.data_ptr():
            tensor.copy_(host)
        return tensor

    def bcast(self, obj, root: int = 0):
        return self.mpi.bcast(obj, root=root)

    def gather(self, obj, root: int = 0):
        return self.mpi.gather(obj, root=root)

    def allgather(self, obj):
        return self.mpi.allgather(obj)

    def node_allgather(self, obj):
        """Collective over this node's ranks: their objects, in node-local rank order."""
        return self.node.allgather(obj)

    def barrier(self) -> None:
        self.mpi.Barrier()

    def post_exchange(self, sends: dict, recv_shapes: dict, dtype: torch.dtype, tag: int = 7):
        """Post non-blocking sends and receives to neighbour ranks.

        Parameters
        ----------
        sends : dict rank -> Tensor (1D, on CPU)
        recv_shapes : dict rank -> int, number of elements to receive from each rank

        Returns
        -------
        handle : object to pass to :meth:`wait_exchange`
        """
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        recv = {r: np.empty(n, dtype=np_dtype) for r, n in recv_shapes.items()}
        reqs = [self.mpi.Irecv(buf, source=r, tag=tag) for r, buf in recv.items()]
        keep = {}
        for r, t in sends.items():
            keep[r] = t.detach().to("cpu").contiguous().numpy()
            reqs.append(self.mpi.Isend(keep[r], dest=r, tag=tag))
        return reqs, recv, keep

    def wait_exchange(self, handle) -> dict:
        """Complete a posted exchange; returns dict rank -> Tensor (1D, CPU)."""
        reqs, recv, _ = handle
        with self.times.measure("exchange"):
            self._complete(reqs)
        return {r: torch.from_numpy(buf) for r, buf in recv.items()}

    def split(self, color: int, key: int) -> "Comm":
        """Collective. Sub-communicator of the ranks with the same ``color`` (``Comm.Split``),
        ranked by ``key``."""
        sub = Comm(self.mpi.Split(color, key))
        sub.yield_waits = self.yield_waits
        return sub

    def abort(self, code: int = 1) -> None:
        self.mpi.Abort(code)


def world():
    """The job's world communicator, or a :class:`SerialComm` when not launched under MPI
    and mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        return SerialComm()
    return Comm(MPI.COMM_WORLD)

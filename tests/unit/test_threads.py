"""CPU threads per rank from the node's affinity masks."""
from __future__ import annotations

import os

import torch

from ddpinn.parallel import SerialComm
from ddpinn.parallel.device import set_threads, threads_for


def test_unbound_ranks_share_the_node():
    masks = [list(range(16))] * 4  # mpiexec without binding: every rank sees every core
    assert [threads_for(masks, r) for r in range(4)] == [4, 4, 4, 4]


def test_bound_ranks_keep_their_own_cores():
    masks = [list(range(4 * r, 4 * r + 4)) for r in range(4)]  # srun --cpus-per-task=4
    assert [threads_for(masks, r) for r in range(4)] == [4, 4, 4, 4]
    assert threads_for([[r] for r in range(8)], 3) == 1  # one core per rank


def test_oversubscribed_and_partly_shared():
    assert threads_for([[0, 1]] * 4, 2) == 1  # 4 ranks on 2 cores: at least one
    # Two ranks share cores 0-7, one has 8-15 alone.
    masks = [list(range(8)), list(range(8)), list(range(8, 16))]
    assert [threads_for(masks, r) for r in range(3)] == [4, 4, 8]


def test_set_threads_serial():
    before = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
        assert set_threads(0, SerialComm()) == cores == torch.get_num_threads()
        assert set_threads(1, SerialComm()) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_waiting_policy():
    from ddpinn.parallel.device import oversubscribed

    assert oversubscribed([[0, 1]] * 4, 0)  # 4 ranks on 2 cores: waiting ranks yield
    assert not oversubscribed([[0, 1]] * 2, 1)  # a core each: spin
    assert not oversubscribed([[r] for r in range(4)], 2)  # bound, one core each
    comm = SerialComm()
    before = torch.get_num_threads()
    try:
        set_threads(1, comm, "yield")
        assert comm.yield_waits
        set_threads(1, comm, "spin")
        assert not comm.yield_waits
        set_threads(1, comm, "auto")  # one process: never more ranks than cores
        assert not comm.yield_waits
    finally:
        torch.set_num_threads(before)

"""Step-time accounting: nested measurements are exclusive and add up to the wall time."""
from __future__ import annotations

import time

import pytest

from ddpinn.parallel import SerialComm
from ddpinn.parallel.timing import StepTimes


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_nested_measurements_are_exclusive():
    times = StepTimes()
    t0 = time.perf_counter()
    with times.measure("compute"):
        busy(0.02)
        with times.measure("exchange"):
            busy(0.03)
            with times.measure("allreduce"):
                busy(0.01)
        busy(0.02)
    wall = time.perf_counter() - t0
    s = times.seconds
    # Lower bounds only: time slicing on a busy machine can only add time.
    assert s["compute"] >= 0.04 and s["exchange"] >= 0.03 and s["allreduce"] >= 0.01
    # Nothing counted twice: the exclusive parts add up to the wall time of the block.
    assert sum(s.values()) == pytest.approx(wall, rel=1e-3)
    times.reset()
    assert times.seconds == {"compute": 0.0, "exchange": 0.0, "allreduce": 0.0}


def test_an_exception_still_closes_the_measurement():
    times = StepTimes()
    with pytest.raises(ValueError):
        with times.measure("compute"):
            with times.measure("exchange"):
                raise ValueError("boom")
    with times.measure("allreduce"):
        busy(0.005)
    assert times.seconds["exchange"] > 0 and times.seconds["allreduce"] >= 0.005
    assert times.seconds["compute"] < 0.005  # not left open by the exception


def test_every_communicator_has_its_own_times():
    a, b = SerialComm(), SerialComm()
    with a.times.measure("compute"):
        busy(0.001)
    assert a.times.seconds["compute"] > 0 and b.times.seconds["compute"] == 0

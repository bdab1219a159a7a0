"""Relative L2 errors: a pressure known up to a constant, which in a time-dependent problem
may change with time."""
from __future__ import annotations

import numpy as np

from ddpinn.pdes import PDES
from ddpinn.training.evaluate import relative_errors


def test_pressure_gauge_is_removed_per_time():
    pde = PDES["taylor_green"](3)
    rng = np.random.default_rng(0)
    times = np.repeat([0.0, 0.5, 1.0], 50)
    truth = rng.standard_normal((150, 4))
    pred = truth.copy()
    pred[:, 3] += 0.3 + 2.0 * times  # p + c(t): the same flow
    pred[:, 0] += 0.01  # a real error in u
    per_time = relative_errors(pde, pred, truth, times)
    assert per_time["l2_p"] < 1e-14
    assert per_time["l2_u"] > 0
    global_mean = relative_errors(pde, pred, truth)  # steady problems: one constant
    assert global_mean["l2_p"] > 0.1
    pred[:, 3] = truth[:, 3] + 0.7  # a constant offset is removed either way
    assert relative_errors(pde, pred, truth)["l2_p"] < 1e-14
    assert relative_errors(pde, pred, truth, times)["l2_p"] < 1e-14

"""Per-step timings in metrics.jsonl: present on every step, consistent, and the exchange
wait is zero on one rank (nothing to wait for) and positive when subdomains are split."""
from __future__ import annotations

import json

import pytest

from .conftest import HERE, check, run_case

CASE = HERE / "cases" / "invariance.toml"
KEYS = ("time_step", "time_compute", "time_exchange", "time_allreduce")


@pytest.mark.parametrize("ranks", [1, 2])
def test_metrics_hold_the_step_time_split(tmp_path, ranks):
    out = tmp_path / "run"
    check(run_case(ranks, CASE, out, "stages.0.steps=6", "stages.1.steps=3")[0])
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(9))
    for r in rows:
        step = r["time_step"]
        parts = [r[k] for k in KEYS[1:]]
        assert step > 0 and r["time_compute"] > 0 and all(p >= 0 for p in parts)
        # The parts are exclusive shares of the step (L-BFGS algebra is the remainder).
        assert sum(parts) <= step * (1 + 1e-9)
        assert r["time_allreduce"] > 0  # metric reductions happen on any rank count
    lbfgs = [r for r in rows if r["stage"] == 1]
    assert all(r["time_step"] > r["time_compute"] for r in lbfgs)
    if ranks == 1:
        assert all(r["time_exchange"] == 0.0 for r in rows)
    else:
        assert all(r["time_exchange"] > 0 for r in rows)

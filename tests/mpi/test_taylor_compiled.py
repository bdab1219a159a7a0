"""A two-rank run with the compiled Taylor sweep (``network.compile = true``) follows the
eager run's loss history; a condition set with ``residual_gradient`` (differentiated twice)
trains eagerly."""
from __future__ import annotations

import pytest

from .conftest import ROOT, check, losses, run_case

pytest.importorskip("torch._inductor")

RES_GRAD = ("interface.conditions=['average_solution', 'residual_gradient']",
            "interface.weights={average_solution=10.0, residual_gradient=0.001}")


def test_two_rank_run_with_compile_follows_the_eager_run(tmp_path):
    """Poisson 2D on 2 ranks, float64: the same loss history to 1e-9 with the compiled sweep;
    a condition set with residual_gradient trains too (eagerly)."""
    case = ROOT / "cases" / "poisson2d.toml"
    common = ["case.dtype='float64'", "stages.0.steps=6", "stages.1.steps=2",
              "network.width=16", "points.interior=64", "output.log_every=1",
              "output.eval_every=0", "output.checkpoint_every=0"]
    runs = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        proc, _ = run_case(2, case, out, *common, f"network.compile={flag}", timeout=600,
                           quiet=False)
        check(proc)
        runs[flag] = losses(out)
        assert ("compiled the Taylor sweep in" in proc.stderr) == (flag == "true"), proc.stderr
    assert runs["true"].keys() == runs["false"].keys() and len(runs["true"]) >= 8
    for step, ref in runs["false"].items():
        assert abs(runs["true"][step] - ref) <= 1e-9 * abs(ref), (step, runs)
    out = tmp_path / "gres"
    proc, _ = run_case(2, case, out, *common, "network.compile=true", *RES_GRAD, timeout=600,
                       quiet=False)
    check(proc)
    assert "compiling the Taylor sweep" not in proc.stderr  # gres needs the eager engine
    assert len(losses(out)) >= 8

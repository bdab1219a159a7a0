"""Stopping rules per stage and precision per stage, under mpiexec.

One case (tests/mpi/cases/stages.toml): a float32 Adam stage that ends at a target loss, then
a float64 L-BFGS stage that ends when its best loss stops improving. It must end each stage
at the step the rule says, follow the same trajectory on 1, 2 and 4 ranks, resume from a
checkpoint (of either stage) on another rank count onto the same trajectory and stop at the
same step, and write its solution in the final precision.
"""
from __future__ import annotations

import math
import shutil

import netCDF4
import numpy as np
import pytest
import torch

from ddpinn.io.checkpoint import load

from .conftest import HERE, check, metric_rows, run_case

CASE = HERE / "cases" / "stages.toml"
TARGET = 1.2  # reached inside stage 0 (float32 Adam, 30 steps)
FLOOR, PATIENCE = 0.1, 2  # stage 1 (float64 L-BFGS, 40 steps) plateaus before its end
RULES = ("stages.0.steps=30", f"stages.0.target_loss={TARGET}", "stages.1.steps=40",
         "stages.1.max_evals=10", "stages.1.history=10", f"stages.1.min_improvement={FLOOR}",
         f"stages.1.patience={PATIENCE}", "output.checkpoint_every=1", "output.log_every=1")


rows_of = metric_rows


def plateau_stop(losses, floor, patience) -> int:
    """Index of the step at which the plateau rule ends a stage with these losses, or -1:
    the best loss has improved by less than ``floor`` (relative) over ``patience`` steps."""
    best, wait = math.inf, 0
    for i, loss in enumerate(losses):
        if best == math.inf or best - loss > floor * abs(best):
            best, wait = loss, 0
        else:
            wait += 1
        if wait >= patience:
            return i
    return -1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The rules case on 1, 2 and 4 ranks (a checkpoint after every step)."""
    base = tmp_path_factory.mktemp("stages")
    out = {}
    for ranks in (1, 2, 4):
        out[ranks] = base / f"ranks{ranks}"
        proc, _ = run_case(ranks, CASE, out[ranks], *RULES, quiet=ranks != 1)
        check(proc)
        if ranks == 1:
            (base / "log1.txt").write_text(proc.stderr)
    return out


def test_each_rule_ends_its_stage_at_the_right_step(runs):
    rows = rows_of(runs[1])
    assert [r["step"] for r in rows] == list(range(len(rows)))
    stage0 = [r for r in rows if r["stage"] == 0]
    stage1 = [r for r in rows if r["stage"] == 1]
    # target_loss: the stage's last step is the first one at or below the target.
    first = next(i for i, r in enumerate(stage0) if r["loss"] <= TARGET)
    assert 0 < first < 29, "the target must be reached inside the stage for this test"
    assert len(stage0) == first + 1 and stage0[-1]["stage_end"] == "target_loss"
    assert all("stage_end" not in r for r in stage0[:-1])
    # min_improvement / patience: where the rule, replayed on the losses, stops.
    stop = plateau_stop([r["loss"] for r in stage1], FLOOR, PATIENCE)
    assert 0 < stop < 39, "the plateau must come inside the stage for this test"
    assert len(stage1) == stop + 1 and stage1[-1]["stage_end"] == "min_improvement"
    log = (runs[1].parent / "log1.txt").read_text()
    assert f"stage 0 [adam] ended by target_loss at step {first}" in log
    assert f"stage 1 [lbfgs] ended by min_improvement at step {first + 1 + stop}" in log
    # The progress total: both upper bounds at first, then the steps stage 0 ran.
    assert "step 0/70 [adam]" in log
    assert f"step {first + 1}/{first + 1 + 40} [lbfgs]" in log
    assert "computes in float64" in log


def test_same_trajectory_and_stops_on_1_2_and_4_ranks(runs):
    """float32 then float64, with rules firing: the same losses and the same last steps."""
    ref = rows_of(runs[1])
    for ranks in (2, 4):
        got = rows_of(runs[ranks])
        assert [(r["step"], r["stage"], r.get("stage_end")) for r in got] == \
            [(r["step"], r["stage"], r.get("stage_end")) for r in ref]
        # Every expert's arithmetic is independent of the experts a rank owns and sums
        # over experts are exact: the same bits, in float32 and in float64.
        assert [r["loss"] for r in got] == [r["loss"] for r in ref], ranks


def test_checkpoints_carry_precision_and_rule_state(runs):
    rows = rows_of(runs[4])
    switch = next(r["step"] for r in rows if r["stage"] == 1)
    ckpts = runs[4] / "checkpoints"
    f32 = load(ckpts / f"ckpt_{switch - 1:08d}.pt")  # inside the float32 stage
    f64 = load(ckpts / f"ckpt_{switch + 2:08d}.pt")  # inside the float64 stage
    assert f32["scalars"]["dtype"] == "float32" and f64["scalars"]["dtype"] == "float64"
    for state, dtype in ((f32, torch.float32), (f64, torch.float64)):
        params = [v for b in state["blocks"] for k, v in b.items() if k.startswith("param/")]
        assert params and all(p.dtype == dtype for p in params)
    ended = load(ckpts / f"ckpt_{switch:08d}.pt")["scalars"]  # right after the target
    assert ended["stage_index"] == 0 and ended["stage_ended_by"] == "target_loss"
    assert f64["scalars"]["stage_best"] is not None and f64["scalars"]["stage_minutes"] > 0


def _resume(run_dir, step, ranks, out, *sets):
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / f"ckpt_{step:08d}.pt", out / "checkpoints")
    proc, _ = run_case(ranks, CASE, out, *RULES, *sets, resume="auto")
    check(proc)
    return rows_of(out)


def _same_rest(ref, got, step):
    rest = [r for r in ref if r["step"] >= step]
    assert [(r["step"], r["stage"], r.get("stage_end")) for r in got] == \
        [(r["step"], r["stage"], r.get("stage_end")) for r in rest]
    a = np.array([r["loss"] for r in rest])
    b = np.array([r["loss"] for r in got])
    assert np.max(np.abs(a - b) / np.abs(a)) <= 1e-10


def test_float64_checkpoint_resumes_on_another_rank_count_and_stops_alike(runs, tmp_path):
    """A checkpoint of the float64 stage written on 4 ranks, one step before the plateau
    rule fires (its wait is under way), resumes on 1 rank: same losses, same last step."""
    ref = rows_of(runs[1])
    step = ref[-1]["step"] - 1
    got = _resume(runs[4], step, 1, tmp_path / "resumed")
    _same_rest(ref, got, step)
    with netCDF4.Dataset(tmp_path / "resumed" / "solution.nc") as ds:
        assert ds["u"].dtype == np.float64 and ds.dtype == "float64"


def test_checkpoint_after_a_rule_fired_resumes_into_the_next_stage(runs, tmp_path):
    """The checkpoint right after target_loss ended the float32 stage: a resume on 2 ranks
    goes on with the float64 stage (not the rest of the ended one), as the run did."""
    ref = rows_of(runs[1])
    switch = next(r["step"] for r in ref if r["stage"] == 1)
    got = _resume(runs[4], switch, 2, tmp_path / "resumed")
    _same_rest(ref, got, switch)


def test_resuming_after_the_last_stage_ended_says_nothing_is_left(runs, tmp_path):
    """The last checkpoint is written at the step the plateau rule ended the last stage:
    resumed with the rule relaxed, the run trains no step and says so, naming the newest
    checkpoint written inside the stage."""
    ref = rows_of(runs[4])
    last = ref[-1]["step"] + 1  # the checkpoint after the last step
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    for step in (last - 1, last):
        shutil.copy(runs[4] / "checkpoints" / f"ckpt_{step:08d}.pt", out / "checkpoints")
    proc, _ = run_case(2, CASE, out, *RULES, "stages.1.patience=1000", resume="auto")
    check(proc)
    assert f"checkpoint at step {last} was written after the last of the 2 stages ended" \
        in proc.stderr
    assert f"ckpt_{last - 1:08d}.pt" in proc.stderr
    assert not (out / "metrics.jsonl").exists()  # no step was trained


def test_wall_minutes_used_before_a_restart_count(runs, tmp_path):
    """A resumed stage keeps the minutes it used: with max_minutes below them (and the
    plateau rule out of the way) it ends at its first step after the restart."""
    ref = rows_of(runs[1])
    step = ref[-1]["step"] - 1
    used = load(runs[4] / "checkpoints" / f"ckpt_{step:08d}.pt")["scalars"]["stage_minutes"]
    got = _resume(runs[4], step, 2, tmp_path / "resumed", "stages.1.patience=1000",
                  f"stages.1.max_minutes={used * 0.9!r}")
    assert [(r["step"], r.get("stage_end")) for r in got] == [(step, "max_minutes")]


def test_tiny_wall_limit_ends_the_stage_on_every_rank_at_once(tmp_path):
    """max_minutes, decided on rank 0's clock and reduced with the step: a float64 stage
    with a limit of a few seconds ends mid-stage, all ranks go on with the float32 stage
    (L-BFGS: ranks in different stages would not complete its collectives), and the
    solution is written in float32."""
    out = tmp_path / "run"
    proc, _ = run_case(2, CASE, out, "stages.0.steps=100000", "stages.0.dtype=\"float64\"",
                       "stages.0.max_minutes=0.02", "stages.1.steps=4",
                       "stages.1.dtype=\"float32\"", "output.checkpoint_every=1000",
                       timeout=300)
    check(proc)
    rows = rows_of(out)
    stage0 = [r for r in rows if r["stage"] == 0]
    assert stage0[-1]["stage_end"] == "max_minutes" and len(stage0) < 100000
    assert [r["step"] for r in rows] == list(range(len(stage0) + 4))
    assert stage0[-1]["time_step"] > 0
    with netCDF4.Dataset(out / "solution.nc") as ds:
        assert ds["u"].dtype == np.float32 and ds.dtype == "float32"
        assert ds["x"].dtype == np.float64 and ds.Conventions == "CF-1.8"
    final = load(out / "checkpoints" / f"ckpt_{rows[-1]['step'] + 1:08d}.pt")
    assert final["scalars"]["dtype"] == "float32" and len(final["blocks"]) == 2
    params = [v for b in final["blocks"] for k, v in b.items() if k.startswith("param/")]
    assert all(p.dtype == torch.float32 for p in params)  # every rank's experts

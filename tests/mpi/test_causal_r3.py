"""Causal weights (global time chunks over 4 time slabs, an epsilon schedule) and R3 sampling
keep the central property: 1, 2 and 4 ranks follow the same loss trajectory, and a checkpoint
written on 4 ranks (adapted points, epsilon step) resumes on 2 with an uninterrupted run's
losses."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ddpinn.io import checkpoint
from ddpinn.io.config import load
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem
from ddpinn.training.solver import Solver

from .conftest import HERE, check, run_case

CASE = HERE / "cases" / "causal_r3.toml"
STEPS = 60  # 45 Adam + 15 L-BFGS; R3 at 15, 30, 45; checkpoints every 25


def rows(run_dir) -> dict:
    out = {}
    for line in open(Path(run_dir) / "metrics.jsonl"):
        if line.strip():
            r = json.loads(line)
            out[r["step"]] = r
    return out


def assert_same(ref: dict, got: dict, steps) -> None:
    for s in steps:
        for key in ("loss", "residual", "causal_weight_min", "causal_epsilon"):
            assert got[s][key] == ref[s][key], (s, key, ref[s][key], got[s][key])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc, _ = run_case(1, CASE, out)
    check(proc)
    return out


@pytest.fixture(scope="module")
def four_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("four") / "run"
    proc, _ = run_case(4, CASE, out, "output.checkpoint_every=25")
    check(proc)
    return out


def test_reference_uses_causal_weights_and_r3(reference_run):
    ref = rows(reference_run)
    assert sorted(ref) == list(range(STEPS))
    # The schedule moved on, and later chunks were held back at some point.
    assert len({r["causal_epsilon"] for r in ref.values()}) >= 2
    assert min(r["causal_weight_min"] for r in ref.values()) < 0.5
    assert ref[STEPS - 1]["loss"] < 0.1 * ref[0]["loss"]


@pytest.mark.parametrize("ranks", [2, 4])
def test_same_trajectory_on_any_rank_count(reference_run, four_rank_run, tmp_path, ranks):
    if ranks == 4:
        out = four_rank_run
    else:
        out = tmp_path / "run"
        proc, _ = run_case(ranks, CASE, out)
        check(proc)
    ref, got = rows(reference_run), rows(out)
    assert sorted(got) == list(range(STEPS))
    assert_same(ref, got, range(STEPS))  # bitwise


def test_checkpoint_holds_adapted_points(four_rank_run):
    state = checkpoint.load(four_rank_run / "checkpoints" / "ckpt_00000050.pt")
    assert state["scalars"]["causal_epsilon_index"] >= 1
    pts = [checkpoint.record(state, s)["points/interior"] for s in range(8)]
    assert all(p.shape == (48, 2) for p in pts)
    assert not torch.equal(pts[0], pts[1])


@pytest.mark.parametrize("step", [25, 50])  # inside Adam (R3 at 30 follows), inside L-BFGS
def test_checkpoint_from_4_ranks_resumes_on_2(reference_run, four_rank_run, tmp_path, step):
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(four_rank_run / "checkpoints" / f"ckpt_{step:08d}.pt", resumed / "checkpoints")
    proc, _ = run_case(2, CASE, resumed, resume="auto")
    check(proc)
    ref, got = rows(reference_run), rows(resumed)
    assert sorted(got) == list(range(step, STEPS))
    assert_same(ref, got, range(step, STEPS))


def test_a_stage_may_switch_causal_weights_and_resampling_off(reference_run, tmp_path):
    """``stages.K.causal = false`` and ``stages.K.resample = false``: the L-BFGS stage trains
    the plain objective on fixed points (its rows report uniform weights, and its final
    points are those of step 45, before the R3 update that would come at step 45)."""
    off = tmp_path / "off"
    proc, _ = run_case(2, CASE, off, "stages.1.causal=false", "stages.1.resample=false",
                       "output.checkpoint_every=60")
    check(proc)
    adam_only = tmp_path / "adam"
    proc, _ = run_case(2, CASE, adam_only, "stages.1.steps=0", "output.checkpoint_every=45")
    check(proc)
    ref, got = rows(reference_run), rows(off)
    assert_same(ref, got, range(45))  # the Adam stage is unchanged
    assert all(got[s]["causal_weight_min"] == 1.0 for s in range(45, STEPS))
    assert min(ref[s]["causal_weight_min"] for s in range(45, STEPS)) < 1.0
    assert got[STEPS - 1]["loss"] < got[45]["loss"]
    last = checkpoint.load(off / "checkpoints" / "ckpt_00000060.pt")
    at_45 = checkpoint.load(adam_only / "checkpoints" / "ckpt_00000045.pt")
    for sid in range(8):
        assert torch.equal(checkpoint.record(last, sid)["points/interior"],
                           checkpoint.record(at_45, sid)["points/interior"])


def test_a_stage_may_name_its_own_resampler(reference_run, tmp_path):
    """``stages.1.resample = "uniform"`` after an R3 stage: the Adam stage is unchanged, the
    L-BFGS stage trains on the uniform draw of sampling epoch 45 // 15 (every interior point
    redrawn, the same points a solver of the case draws for that epoch), the same on 2 and
    4 ranks, and a checkpoint inside the stage resumes on another rank count."""
    own = tmp_path / "own"
    stage_uniform = 'stages.1.resample="uniform"'
    proc, _ = run_case(2, CASE, own, stage_uniform, "output.checkpoint_every=5")
    check(proc)
    ref, got = rows(reference_run), rows(own)
    assert sorted(got) == list(range(STEPS))
    assert_same(ref, got, range(45))
    assert got[45]["loss"] != ref[45]["loss"]  # new points (R3 would keep half of them)
    four = tmp_path / "four"
    proc, _ = run_case(4, CASE, four, stage_uniform)
    check(proc)
    assert_same(got, rows(four), range(STEPS))

    cfg = load(CASE, [stage_uniform])
    solver = Solver(build_problem(cfg), SerialComm())
    solver.resample(45 // cfg.points.resample_every)
    drawn = solver.interior_points()
    at_45 = checkpoint.load(own / "checkpoints" / "ckpt_00000045.pt")
    at_50 = checkpoint.load(own / "checkpoints" / "ckpt_00000050.pt")
    for e, sid in enumerate(solver.sids):
        pts = checkpoint.record(at_50, sid)["points/interior"]
        assert torch.equal(pts, drawn[e])
        assert not torch.isin(pts, checkpoint.record(at_45, sid)["points/interior"]).any()

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(own / "checkpoints" / "ckpt_00000050.pt", resumed / "checkpoints")
    proc, _ = run_case(4, CASE, resumed, stage_uniform, resume="auto")
    check(proc)
    assert_same(got, rows(resumed), range(50, STEPS))

"""The central property: 1, 2 and 4 ranks follow the same loss trajectory, and a checkpoint
written on 4 ranks resumes on 2 with the losses of an uninterrupted run."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from ddpinn.io.checkpoint import gather_sids, load, sids_in

from .conftest import HERE, check, losses, run_case

CASE = HERE / "cases" / "invariance.toml"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc, _ = run_case(1, CASE, out, "output.checkpoint_every=40")
    check(proc)
    return out


def _max_rel(a: dict, b: dict, steps) -> float:
    x = np.array([a[s] for s in steps])
    y = np.array([b[s] for s in steps])
    return float(np.max(np.abs(x - y) / np.abs(x)))


@pytest.mark.parametrize("ranks,wait", [(2, "auto"), (4, "auto"), (2, "yield"), (4, "spin")])
def test_same_loss_trajectory_on_any_rank_count(reference_run, tmp_path, ranks, wait):
    """Whatever the rank count, and whether waiting ranks spin or yield their core."""
    out = tmp_path / "run"
    proc, _ = run_case(ranks, CASE, out, f"parallel.wait={wait}")
    check(proc)
    ref, got = losses(reference_run), losses(out)
    assert sorted(got) == list(range(200)) == sorted(ref)
    # Adam and L-BFGS stages both covered: 150 + 50 steps.
    assert _max_rel(ref, got, range(200)) <= 1e-10
    assert ref[199] < 0.5 * ref[0]  # it trains


def test_early_send_keeps_the_trajectory_on_any_rank_count(reference_run, tmp_path):
    """parallel.early_send evaluates the interface rows first, at a row that is the same on
    every rank: 1 and 4 ranks agree as tightly as without it, and with the default run to
    rounding."""
    runs = {}
    for ranks in (1, 4):
        out = tmp_path / f"early{ranks}"
        check(run_case(ranks, CASE, out, "parallel.early_send=true")[0])
        runs[ranks] = losses(out)
    assert sorted(runs[1]) == sorted(runs[4]) == list(range(200))
    assert _max_rel(runs[1], runs[4], range(200)) <= 1e-10
    assert _max_rel(losses(reference_run), runs[1], range(200)) <= 1e-8


def _expert_state(path) -> dict:
    """Every expert's parameters and optimizer state in a checkpoint, by sid order."""
    state = load(path)
    return gather_sids(state, sids_in(state))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_expert_per_rank_follows_the_same_bits(tmp_path, dtype):
    """On a 2x2 grid, 2 ranks own two experts each and 4 ranks one each (batches of one go
    through other BLAS kernels than larger batches): the loss at every step, Adam and
    L-BFGS, and the final parameters and optimizer state are the same bits."""
    runs = {}
    for ranks in (2, 4):
        out = tmp_path / f"ranks{ranks}"
        check(run_case(ranks, CASE, out, "decomposition.grid=[2, 2]", f'case.dtype="{dtype}"',
                       "output.checkpoint_every=200")[0])
        runs[ranks] = out
    two, four = losses(runs[2]), losses(runs[4])
    assert sorted(two) == sorted(four) == list(range(200))
    assert [two[s] for s in range(200)] == [four[s] for s in range(200)]
    a, b = (_expert_state(runs[r] / "checkpoints" / "ckpt_00000200.pt") for r in (2, 4))
    assert sorted(a) == sorted(b) and any(k.startswith("param/") for k in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("step", [40, 160])  # inside Adam, inside L-BFGS
def test_checkpoint_from_4_ranks_resumes_on_2(reference_run, tmp_path, step):
    four = tmp_path / "four"
    proc, _ = run_case(4, CASE, four, "output.checkpoint_every=40")
    check(proc)
    ckpt = four / "checkpoints" / f"ckpt_{step:08d}.pt"
    assert ckpt.exists()
    # Resume into a fresh run directory that holds only the checkpoint.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, resumed / "checkpoints")
    proc, _ = run_case(2, CASE, resumed, resume="auto")
    check(proc)
    ref, got = losses(reference_run), losses(resumed)
    assert sorted(got) == list(range(step, 200))
    assert _max_rel(ref, got, range(step, 200)) <= 1e-10

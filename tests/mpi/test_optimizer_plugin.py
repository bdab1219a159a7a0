"""An optimizer registered from outside the package trains a case on 2 ranks, checkpoints
its own state, and a run stopped and resumed with ``--resume auto`` follows the losses of an
uninterrupted run."""
from __future__ import annotations

import numpy as np

from ddpinn.io.checkpoint import gather_sids, list_checkpoints, load, sids_in

from .conftest import HERE, check, losses, run_case

CASE = HERE / "cases" / "invariance.toml"
SGD = ('stages.0.optimizer="tests.mpi.toy_sgd:SGD"', "stages.0.lr=1e-5",
       "stages.1.steps=0", "output.eval_every=0", "output.checkpoint_every=10",
       "output.keep_checkpoints=0")


def test_plugin_optimizer_resumes_on_the_same_trajectory(tmp_path):
    whole = tmp_path / "whole"
    check(run_case(2, CASE, whole, *SGD, "stages.0.steps=30")[0])
    cut = tmp_path / "cut"
    check(run_case(2, CASE, cut, *SGD, "stages.0.steps=20")[0])
    ckpt = load(list_checkpoints(cut / "checkpoints")[-1])
    assert ckpt["scalars"]["stage_step"] == 20 and ckpt["scalars"]["sgd_momentum"] == 0.9
    assert any(k.startswith("sgd/momentum/") for k in ckpt["shared"])  # pde.inverse kappa
    experts = gather_sids(ckpt, sids_in(ckpt))  # every subdomain's rows, stacked
    assert {f"sgd/momentum/{n}" for n in ("weights.0", "biases.0")} <= set(experts)
    assert experts["sgd/momentum/weights.0"].shape[0] == len(sids_in(ckpt))
    check(run_case(2, CASE, cut, *SGD, "stages.0.steps=30", resume="auto")[0])
    ref, got = losses(whole), losses(cut)
    assert sorted(got) == sorted(ref) == list(range(30))
    x = np.array([ref[s] for s in range(30)])
    y = np.array([got[s] for s in range(30)])
    assert np.all(np.isfinite(x)) and x[-1] < x[0]  # it trains
    assert float(np.max(np.abs(x - y) / np.abs(x))) <= 1e-12

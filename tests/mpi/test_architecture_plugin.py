"""A network architecture registered from outside the package (``tests/mpi/residual_mlp.py``)
trains ``cases/poisson2d.toml`` on 2 ranks with the autograd engine, follows the same loss
trajectory on 1 rank, and a run stopped and resumed from its checkpoint follows the losses
of an uninterrupted run."""
from __future__ import annotations

import numpy as np

from ddpinn.io.checkpoint import gather_sids, list_checkpoints, load, sids_in

from .conftest import ROOT, check, losses, run_case

CASE = ROOT / "cases" / "poisson2d.toml"
ARCH = 'network.architecture="tests.mpi.residual_mlp:ResidualMLP"'
TINY = ("case.dtype='float64'", "network.width=12", "network.depth=3", "points.interior=48",
        "points.boundary=8", "points.interface=8", "stages.1.steps=0", "output.log_every=1",
        "output.eval_every=0", "output.checkpoint_every=4", "output.keep_checkpoints=0")


def test_plugin_architecture_trains_invariantly_and_resumes(tmp_path):
    whole = tmp_path / "whole"
    check(run_case(2, CASE, whole, ARCH, *TINY, "stages.0.steps=8")[0])
    one = tmp_path / "one"
    check(run_case(1, CASE, one, ARCH, *TINY, "stages.0.steps=8")[0])
    mlp = tmp_path / "mlp"
    check(run_case(2, CASE, mlp, *TINY, "stages.0.steps=2")[0])
    cut = tmp_path / "cut"
    check(run_case(2, CASE, cut, ARCH, *TINY, "stages.0.steps=4")[0])
    ckpt = load(list_checkpoints(cut / "checkpoints")[-1])
    experts = gather_sids(ckpt, sids_in(ckpt))
    # The residual network's own parameters, every subdomain's: 2 inputs, 12 wide, 1 output.
    assert "param/weights.0" not in experts
    assert experts["param/w.0"].shape == (4, 2, 12) and experts["param/w.3"].shape == (4, 12, 1)
    check(run_case(2, CASE, cut, ARCH, *TINY, "stages.0.steps=8", resume="auto")[0])
    ref, one_rank, resumed = losses(whole), losses(one), losses(cut)
    assert sorted(ref) == sorted(one_rank) == sorted(resumed) == list(range(8))
    x = np.array([ref[s] for s in range(8)])
    assert np.all(np.isfinite(x)) and x[-1] < x[0]  # it trains
    assert losses(mlp)[0] != ref[0]  # and it is not the default MLP
    for other in (one_rank, resumed):
        y = np.array([other[s] for s in range(8)])
        assert float(np.max(np.abs(x - y) / np.abs(x))) <= 1e-12, (x, y)

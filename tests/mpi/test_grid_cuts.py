"""A grid with given cut positions is one more decomposition: 1 and 3 ranks follow the same
losses, a checkpoint resumes on another rank count, and a checkpoint of other cuts is
refused with one message."""
from __future__ import annotations

import shutil

from .conftest import HERE, check, losses, run_case

CASE = HERE / "cases" / "invariance.toml"
CUTS = ("decomposition.cuts={x = [0.15, 0.3, 0.8], t = [0.35]}", "stages.0.steps=40",
        "stages.1.steps=10", "output.checkpoint_every=20")


def test_cut_grid_is_rank_invariant_and_resumes(tmp_path):
    runs = {}
    for ranks in (1, 3):
        runs[ranks] = tmp_path / f"r{ranks}"
        check(run_case(ranks, CASE, runs[ranks], *CUTS)[0])
    ref = losses(runs[1])
    assert sorted(ref) == sorted(losses(runs[3])) == list(range(50))
    assert all(abs(ref[s] - losses(runs[3])[s]) <= 1e-10 * abs(ref[s]) for s in ref)
    assert ref[49] < ref[0]
    # resume the 3-rank checkpoint of step 20 on 2 ranks: the same losses onwards
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(runs[3] / "checkpoints" / "ckpt_00000020.pt", resumed / "checkpoints")
    check(run_case(2, CASE, resumed, *CUTS, resume="auto")[0])
    got = losses(resumed)
    assert sorted(got) == list(range(20, 50))
    assert all(abs(ref[s] - got[s]) <= 1e-10 * abs(ref[s]) for s in got)
    # the same checkpoint under other cuts belongs to another decomposition
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(runs[3] / "checkpoints" / "ckpt_00000020.pt", other / "checkpoints")
    proc, _ = run_case(2, CASE, other, "decomposition.cuts={x = [0.2, 0.3, 0.8], t = [0.35]}",
                       *CUTS[1:], resume="auto")
    assert proc.returncode != 0
    assert "cell edges" in proc.stderr and "decomposition.cuts" in proc.stderr, proc.stderr

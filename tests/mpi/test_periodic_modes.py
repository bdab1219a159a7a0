"""Mixed periodic wavevectors (``network.periodic_modes = "mixed"``) on a real 3D+t periodic
case: 1, 2 and 4 ranks follow the same loss trajectory, and the run trains."""
from __future__ import annotations

import numpy as np

from .conftest import ROOT, check, losses, run_case

CASE = ROOT / "cases" / "tgv3d_re100.toml"
SMALL = ("decomposition.grid=[1, 1, 1, 4]", 'network.periodic_modes="mixed"',
         "network.periodic_harmonics=1", "network.width=8", "network.depth=2",
         'case.dtype="float64"', "points.interior=40", "points.boundary=8",
         "points.interface=16", "stages.0.steps=20", "stages.1.steps=10",
         "output.grid=[]", "output.reference_n=16", "output.checkpoint_every=100")


def test_mixed_modes_follow_the_same_trajectory_on_1_2_4_ranks(tmp_path):
    runs = {}
    for ranks in (1, 2, 4):
        out = tmp_path / f"ranks{ranks}"
        check(run_case(ranks, CASE, out, *SMALL)[0])
        runs[ranks] = losses(out)
    steps = list(range(30))
    assert sorted(runs[1]) == sorted(runs[2]) == sorted(runs[4]) == steps
    ref = np.array([runs[1][s] for s in steps])
    for ranks in (2, 4):
        got = np.array([runs[ranks][s] for s in steps])
        assert np.max(np.abs(got - ref) / ref) <= 1e-10, ranks
    assert ref[-1] < 0.5 * ref[0]  # it trains

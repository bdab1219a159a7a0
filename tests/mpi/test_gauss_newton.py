"""Gauss-Newton under mpiexec: 1, 2 and 4 ranks follow the same bits, a checkpoint written
mid-stage on 4 ranks resumes on 2, the loss never increases, and a NaN loss rolls back."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from .conftest import HERE, ROOT, check, losses, metric_rows, run_case

# The invariance case: 8 subdomains (E = 8, 4, 2 per rank), a time axis, data, and an
# inverse unknown (kappa) shared by every expert.
CASE = HERE / "cases" / "invariance.toml"
ADAM, GN = 4, 5
SETS = (f"stages.0.steps={ADAM}", 'stages.1.optimizer="gauss_newton"', f"stages.1.steps={GN}",
        "stages.1.max_evals=4", "output.eval_every=0")


rows = metric_rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("gn")
    out = {}
    for ranks in (1, 2, 4):
        out[ranks] = base / f"ranks{ranks}"
        check(run_case(ranks, CASE, out[ranks], *SETS, "output.checkpoint_every=6")[0])
    return out


def test_same_bits_on_1_2_and_4_ranks_and_the_loss_never_increases(runs):
    got = {n: losses(d) for n, d in runs.items()}
    steps = list(range(ADAM + GN))
    assert sorted(got[1]) == sorted(got[2]) == sorted(got[4]) == steps
    assert [got[1][s] for s in steps] == [got[2][s] for s in steps] == \
        [got[4][s] for s in steps]
    gn = [got[1][s] for s in range(ADAM, ADAM + GN)]
    assert np.all(np.diff(gn) <= 0) and gn[-1] < 0.5 * got[1][ADAM - 1]
    last = rows(runs[1])[-1]
    # The shared unknown moves, and the block model's diagnostics are logged.
    assert last["param_kappa"] != 0.3
    assert {"gn_lambda", "gn_ratio", "gn_alpha", "gn_tries"} <= set(last)


def test_checkpoint_mid_stage_on_4_ranks_resumes_on_2(runs, tmp_path):
    ckpt = runs[4] / "checkpoints" / "ckpt_00000006.pt"  # inside the Gauss-Newton stage
    assert ckpt.exists()
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, resumed / "checkpoints")
    check(run_case(2, CASE, resumed, *SETS, "output.checkpoint_every=6", resume="auto")[0])
    ref, got = losses(runs[1]), losses(resumed)
    assert sorted(got) == list(range(6, ADAM + GN))
    assert [got[s] for s in got] == [ref[s] for s in got]
    # lambda came back from the checkpoint (a fresh one would restart from stages.damping)
    assert rows(resumed)[0]["gn_lambda"] == rows(runs[1])[6]["gn_lambda"]


def test_nan_loss_in_a_gauss_newton_stage_rolls_back(tmp_path):
    """Evaluations are counted per process: 6 Adam steps, then the first Gauss-Newton step
    evaluates the loss (7) and the Jacobian (8). NaN from the Jacobian on: every solve is
    rejected, the kept point is evaluated again (9, NaN), and the trainer rolls back."""
    out = tmp_path / "run"
    case = ROOT / "cases" / "poisson2d.toml"
    sets = ("stages.0.steps=6", 'stages.1.optimizer="gauss_newton"', "stages.1.steps=4",
            "stages.1.max_evals=2", 'case.dtype="float64"', "points.interior=48",
            "network.width=8", "output.checkpoint_every=4", "output.eval_every=0",
            "pde.name=\"tests.mpi.faulty:NaNPoisson\"")
    proc, _ = run_case(4, case, out, *sets, env={"NAN_RANK": "1", "NAN_FROM": "8",
                                                  "NAN_TO": "10"})
    check(proc)
    assert "rolled back to ckpt_00000004.pt with learning rate x0.5" in proc.stderr
    got = losses(out)
    assert sorted(got) == list(range(10))
    gn = [got[s] for s in range(6, 10)]
    assert np.all(np.isfinite(gn)) and np.all(np.diff(gn) <= 0)


# A domain with a shape: an L-shape with a hole (12 cut and whole cells, E = 12, 6, 3 per
# rank), Dirichlet data outside and a Neumann condition on the hole, as Gauss-Newton rows.
SHAPE_CASE = HERE / "cases" / "shape_invariance.toml"
SHAPE_SETS = (f"stages.0.steps={ADAM}", 'stages.1.optimizer="gauss_newton"',
              f"stages.1.steps={GN}", "stages.1.max_evals=4", "network.width=8",
              "points.interior=32", "points.boundary=8", "points.interface=6")


def test_shaped_domain_same_trajectory_on_1_2_and_4_ranks_and_the_loss_decreases(tmp_path):
    got = {}
    for ranks in (1, 2, 4):
        check(run_case(ranks, SHAPE_CASE, tmp_path / f"ranks{ranks}", *SHAPE_SETS)[0])
        got[ranks] = losses(tmp_path / f"ranks{ranks}")
    steps = list(range(ADAM + GN))
    ref = np.array([got[1][s] for s in steps])
    for ranks in (2, 4):
        assert sorted(got[ranks]) == steps
        other = np.array([got[ranks][s] for s in steps])
        assert np.max(np.abs(other - ref) / np.abs(ref)) <= 1e-10
    gn = ref[ADAM:]
    assert np.all(np.diff(gn) <= 0) and gn[-1] < 0.5 * ref[ADAM - 1]
    assert "gn_ratio" in rows(tmp_path / "ranks1")[-1]


# The coupled step (coupling = "global"): 8 subdomains of Poisson (E = 8, 4, 2 per rank),
# symmetric and one-sided conditions, every product H v exchanging interface rows.
GLOBAL = ('case.dtype="float64"', "decomposition.grid=[4, 2]", "network.width=8",
          "network.depth=2", "points.interior=160", "points.boundary=16",
          "points.interface=8", 'interface.conditions=["average_solution", '
          '"interface_residual", "normal_derivative_continuity"]',
          "interface.weights={average_solution = 10.0, interface_residual = 0.01, "
          "normal_derivative_continuity = 0.1}", "stages.0.steps=3",
          'stages.1.optimizer="gauss_newton"', "stages.1.steps=5", "stages.1.max_evals=4",
          'stages.1.coupling="global"', "stages.1.cg_iterations=8", "output.eval_every=0",
          "output.checkpoint_every=0")


def test_global_coupling_same_bits_on_1_2_and_4_ranks(tmp_path):
    got = {}
    for ranks in (1, 2, 4):
        check(run_case(ranks, ROOT / "cases" / "poisson2d.toml", tmp_path / f"r{ranks}",
                       *GLOBAL)[0])
        got[ranks] = rows(tmp_path / f"r{ranks}")
    steps = [r["step"] for r in got[1]]
    assert steps == list(range(8))
    for ranks in (2, 4):
        assert [r["loss"] for r in got[ranks]] == [r["loss"] for r in got[1]]
    gn = got[1][3:]
    assert all(1 <= r["gn_cg_iterations"] <= 8 for r in gn)
    assert [r["gn_cg_iterations"] for r in got[4][3:]] == [r["gn_cg_iterations"] for r in gn]
    loss = [r["loss"] for r in gn]
    assert np.all(np.diff(loss) <= 0) and loss[-1] < 0.5 * got[1][2]["loss"]


def test_kept_preconditioner_same_bits_on_1_and_4_ranks_and_resumes_on_2(tmp_path):
    """precondition_every = 2: rebuilt at the stage's steps 0, 2, 4 (global 3, 5, 7). The
    checkpoint at step 5 (a rebuild) written on 4 ranks resumes on 2 with the same bits."""
    sets = (*GLOBAL[:-1], "stages.1.precondition_every=2", "output.checkpoint_every=5")
    got = {}
    for ranks in (1, 4):
        check(run_case(ranks, ROOT / "cases" / "poisson2d.toml", tmp_path / f"r{ranks}",
                       *sets)[0])
        got[ranks] = rows(tmp_path / f"r{ranks}")
    assert [r["loss"] for r in got[4]] == [r["loss"] for r in got[1]]
    loss = [r["loss"] for r in got[1][3:]]
    assert np.all(np.diff(loss) <= 0) and loss[-1] < 0.6 * got[1][2]["loss"]
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "r4" / "checkpoints" / "ckpt_00000005.pt", resumed / "checkpoints")
    check(run_case(2, ROOT / "cases" / "poisson2d.toml", resumed, *sets, resume="auto")[0])
    after = {r["step"]: r["loss"] for r in rows(resumed)}
    assert sorted(after) == [5, 6, 7]
    assert [after[s] for s in (5, 6, 7)] == [got[1][s]["loss"] for s in (5, 6, 7)]

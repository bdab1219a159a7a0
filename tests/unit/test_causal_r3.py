"""Causal weights of the residual loss (formula, chunk losses, held weights, epsilon schedule,
the objective they give) and R3 sampling (retained points kept, released ones replaced, count
constant, fresh points keyed by seed, step and sid; only interior rows change), and their
case-file errors."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddpinn.geometry import Box
from ddpinn.io.config import ConfigError, load
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem
from ddpinn.training.causal import CausalWeights, causal_weights, chunk_of
from ddpinn.training.resampling import RESAMPLERS, r3_points
from ddpinn.training.solver import Solver

CASES = Path(__file__).resolve().parents[2] / "cases"


# -- causal weights -------------------------------------------------------------------------
def test_weights_formula():
    losses = np.array([0.5, 2.0, 1.0, 4.0])
    eps = 0.3
    expected = [1.0, np.exp(-eps * 0.5), np.exp(-eps * 2.5), np.exp(-eps * 3.5)]
    np.testing.assert_allclose(causal_weights(losses, eps), expected, rtol=1e-15)
    assert np.all(causal_weights(losses, 0.0) == 1.0)
    assert np.all(np.diff(causal_weights(losses, 5.0)) < 0)  # later chunks wait


def test_chunk_of_splits_the_window_evenly():
    t = np.array([0.0, 0.2499, 0.25, 0.5, 0.99, 1.0])
    assert chunk_of(t, 0.0, 1.0, 4).tolist() == [0, 0, 1, 2, 3, 3]


def causal_object(epsilons, threshold=0.99, chunks=2):
    section = SimpleNamespace(chunks=chunks, epsilon=epsilons, threshold=threshold)
    return CausalWeights(section, (0.0, 1.0), time_axis=1, comm=SerialComm(), n_total=2)


def test_chunk_losses_are_global_means_and_weights_are_held_for_a_step():
    # Two experts, 4 rows each (last row of expert 1 is padding); t decides the chunk.
    t = torch.tensor([[0.1, 0.2, 0.7, 0.8], [0.3, 0.6, 0.9, 0.9]], dtype=torch.float64)
    x = torch.stack([torch.zeros_like(t), t], dim=-1)  # (E, N, 2): (x, t)
    res_w = torch.tensor([[0.25] * 4, [1 / 3] * 3 + [0.0]], dtype=torch.float64)
    cw = causal_object([2.0])
    cw.assign(x, res_w)
    res_sq = torch.tensor([[1.0, 3.0, 10.0, 20.0], [5.0, 30.0, 40.0, 1e6]],
                          dtype=torch.float64)
    rows = cw(res_sq)
    # Chunk 0: rows 1, 3, 5 -> mean 3; chunk 1: 10, 20, 30, 40 -> 25 (padding excluded).
    np.testing.assert_allclose(cw.chunk_losses, [3.0, 25.0])
    w1 = np.exp(-2.0 * 3.0)
    np.testing.assert_allclose(rows.numpy(), [[1, 1, w1, w1], [1, w1, w1, w1]])
    # Held until the next step, whatever the residual does meanwhile.
    assert torch.equal(cw(res_sq * 0), rows)
    cw.begin_step()
    assert torch.equal(cw(res_sq * 0), torch.ones_like(rows))


def test_epsilon_schedule_moves_on_when_all_weights_exceed_threshold():
    t = torch.tensor([[0.1, 0.9]], dtype=torch.float64)
    x = torch.stack([torch.zeros_like(t), t], dim=-1)
    cw = causal_object([0.01, 1.0, 100.0], threshold=0.9)
    cw.assign(x, torch.full((1, 2), 0.5, dtype=torch.float64))
    res = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    seen = []
    for _ in range(4):
        cw.begin_step()
        seen.append((cw.epsilon, float(cw(res).min())))
    # min w = exp(-eps): 0.99 > 0.9 moves on; exp(-1) < 0.9 stays.
    assert [e for e, _ in seen] == [0.01, 1.0, 1.0, 1.0]
    assert cw.state() == {"causal_epsilon_index": 1}
    other = causal_object([0.01, 1.0, 100.0])
    other.load_state(cw.state())
    assert other.epsilon == 1.0


def heat_solver(*extra):
    cfg = load(CASES / "heat1d.toml",
               ["case.dtype=float64", "case.seed=2", "network.width=8", "network.depth=2",
                "points.interior=40", "points.boundary=6", "points.interface=6",
                "decomposition.grid=[2, 2]", *extra])
    return Solver(build_problem(cfg), SerialComm())


def test_causal_objective_weights_each_residual_row_by_its_chunk():
    plain = heat_solver()
    loss_plain, m_plain = plain.closure()
    same = heat_solver("causal.chunks=4", "causal.epsilon=0.0")
    loss_same, m_same = same.closure()
    assert loss_same == loss_plain and m_same["causal_weight_min"] == 1.0
    causal = heat_solver("causal.chunks=4", "causal.epsilon=1.0")
    loss_c, m_c = causal.closure()
    assert m_c["residual"] == m_plain["residual"]  # reported unweighted
    r2 = causal.residual_magnitude() ** 2
    w = causal.causal.weights[causal.causal.row_chunk]
    weighted = float((r2 * w * causal.batch.res_w.numpy()).sum())
    w_res = causal.cfg.loss.residual
    # The "residual" metric is the mean over subdomains; the objective sums over experts.
    n_sub = causal.decomposition.n_subdomains
    assert loss_c - loss_plain == pytest.approx(
        w_res * (weighted - n_sub * m_plain["residual"]), rel=1e-9)
    assert m_c["causal_weight_min"] == causal.causal.weights.min() < 1.0
    # The chunk losses are the global means of the squared residual of the interior rows.
    t = causal.batch.x[..., -1].numpy()
    interior = causal.batch.res_w.numpy() > 0
    chunk = chunk_of(t[interior], 0.0, 1.0, 4)
    means = [r2[interior][chunk == i].mean() for i in range(4)]
    np.testing.assert_allclose(causal.causal.chunk_losses, means, rtol=1e-12)


# -- R3 -------------------------------------------------------------------------------------
def test_r3_points_retain_release_resample():
    box = Box((0.0, 1.0), (2.0, 3.0), ("x", "t"))
    rng = np.random.default_rng(0)
    pts = rng.random((50, 2)) * 2 + [0.0, 1.0]
    mag = rng.random(50) ** 3
    new = r3_points(pts, mag, box, seed=4, step=100, sid=7)
    keep = mag > mag.mean()
    assert new.shape == pts.shape  # count constant
    assert 0 < keep.sum() < 50
    np.testing.assert_array_equal(new[:keep.sum()], pts[keep])  # retained, in order
    fresh = new[keep.sum():]
    assert not np.isin(fresh, pts[~keep]).any()  # released points are gone
    assert np.all((fresh >= box.lower) & (fresh <= box.upper))
    # Fresh points are a function of (seed, step, sid) only.
    np.testing.assert_array_equal(r3_points(pts, mag, box, 4, 100, 7), new)
    assert not np.array_equal(r3_points(pts, mag, box, 4, 200, 7)[keep.sum():], fresh)
    assert not np.array_equal(r3_points(pts, mag, box, 4, 100, 6)[keep.sum():], fresh)


def test_r3_update_of_a_solver_changes_only_interior_rows():
    s = heat_solver("points.resample=r3", "points.resample_every=5")
    before = s.batch.x.clone()
    n = s.cfg.points.interior
    mag = s.residual_magnitude()[:, :n]
    assert not RESAMPLERS["r3"](s, 3, 5) and not RESAMPLERS["r3"](s, 0, 5)
    assert torch.equal(s.batch.x, before)
    assert RESAMPLERS["r3"](s, 5, 5)
    after = s.batch.x
    assert torch.equal(after[:, n:], before[:, n:])  # boundary, interface, padding rows
    for e, sid in enumerate(s.sids):
        keep = mag[e] > mag[e].mean()
        k = int(keep.sum())
        assert torch.equal(after[e, :k], before[e, :n][torch.as_tensor(keep)])
        box = s.decomposition.subdomains[sid].box
        fresh = after[e, k:n].numpy()
        assert np.all((fresh >= box.lower) & (fresh <= box.upper))
    # Another solver of the same case makes the same update: keyed by (seed, step, sid).
    twin = heat_solver("points.resample=r3", "points.resample_every=5")
    twin.r3_update(5)
    assert torch.equal(twin.batch.x, after)


# -- case-file errors -----------------------------------------------------------------------
@pytest.mark.parametrize("case, sets, field, allowed", [
    ("heat1d.toml", ["points.resample=r4"], "points.resample", "uniform, r3"),
    ("heat1d.toml", ["points.resample=r3", "points.resample_every=0"],
     "points.resample_every", ">= 1"),
    ("heat1d.toml", ["points.resample_every=5", "stages.0.resample=r4"],
     "stages[0].resample", "uniform, r3"),
    ("heat1d.toml", ["points.resample_every=5", "stages.0.resample=2"],
     "stages[0].resample", "true, false or a resampler"),
    ("heat1d.toml", ["stages.0.resample=uniform"], "stages[0].resample",
     "points.resample_every = 0"),
    ("heat1d.toml", ["points.resample_every=5", "stages.0.resample=r3", "parallel.replicas=2"],
     "'r3'", "replicas = 1"),
    ("poisson2d.toml", ["causal.chunks=4"], "causal.chunks", "time axis"),
    ("heat1d.toml", ["causal.chunks=-1"], "causal.chunks", ">= 0"),
    ("heat1d.toml", ["causal.chunks=4", "causal.epsilon=[]"], "causal.epsilon", "list"),
    ("heat1d.toml", ["causal.chunks=4", "causal.epsilon=-1.0"], "causal.epsilon", ">= 0"),
    ("heat1d.toml", ["causal.chunks=4", "causal.epsilon='big'"], "causal.epsilon", "number"),
    ("heat1d.toml", ["causal.threshold=1.5"], "causal.threshold", "(0, 1]"),
    ("heat1d.toml", ["causal.chunk=4"], "causal.chunk", "chunks"),
])
def test_bad_causal_and_resample_fields(case, sets, field, allowed):
    with pytest.raises(ConfigError) as exc:
        load(CASES / case, sets)
    msg = str(exc.value)
    assert field in msg and allowed in msg, msg


def test_stage_resampler_true_false_or_a_name():
    from ddpinn.io.config_stages import resamplers_named, stage_resampler

    cfg = load(CASES / "heat1d.toml", ["points.resample_every=5", "stages.0.resample=r3"])
    first, *rest = cfg.stages
    assert stage_resampler(cfg, first) == "r3" and resamplers_named(cfg) == {"uniform", "r3"}
    assert all(stage_resampler(cfg, st) == "uniform" for st in rest)
    cfg.stages[0].resample = False
    assert stage_resampler(cfg, cfg.stages[0]) is None


@pytest.mark.parametrize("where, field", [
    ('resample = "r3"', "points.resample"),
    ('[[stages]]\nresample = "r3"', "stages[0].resample")])
def test_a_shaped_domain_refuses_r3_wherever_it_is_named(tmp_path, where, field):
    deck = tmp_path / "case.toml"
    deck.write_text('[case]\nname = "p"\n[domain.shape]\ntype = "disk"\ncenter = [0.5, 0.5]\n'
                    'radius = 0.5\n[decomposition]\ngrid = [2, 1]\n[pde]\nname = "poisson"\n'
                    '[points]\nresample_every = 5\n' + where.replace("[[", "\n[[") + "\n")
    with pytest.raises(ConfigError, match=rf"'{re.escape(field)}': R3 .*domain.shape"):
        build_problem(load(deck))


def test_epsilon_number_or_schedule():
    assert load(CASES / "heat1d.toml", ["causal.epsilon=2"]).causal.epsilon == [2.0]
    assert load(CASES / "heat1d.toml", ["causal.epsilon=[0.1, 1, 10]"]).causal.epsilon == \
        [0.1, 1.0, 10.0]

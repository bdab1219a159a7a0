"""METALIC bandit: arms, contexts, the GP kernel, and learning on synthetic rewards with a
known best arm per context (one- and two-stage, UCB and Thompson sampling)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.gaussian_process.kernels import RBF, Matern  # noqa: E402

from ddpinn.interface import CONDITIONS  # noqa: E402
from ddpinn.metalic import synthetic as syn  # noqa: E402
from ddpinn.metalic.arms import ArmError, ArmSpace  # noqa: E402
from ddpinn.metalic.bandit import Bandit, Observation  # noqa: E402
from ddpinn.metalic.contexts import (ContextError, ContextParam, ContextSpace,  # noqa: E402
                                     parse_context)
from ddpinn.metalic.model import OnDims, RewardModel, make_kernel  # noqa: E402


# -- arms and contexts ----------------------------------------------------------------------
def test_masks_encode_condition_sets_in_candidate_order():
    arms = ArmSpace()  # every registered condition: METALIC's 9-bit masks
    assert len(arms.candidates) == sum(c.candidate for c in CONDITIONS.values()) == 9
    assert len(arms) == 2 ** 9 - 1
    a = arms.index(["residual_continuity", "average_solution"])
    assert arms.masks[a] == "010100000"
    assert arms.conditions(a) == ["average_solution", "residual_continuity"]
    assert arms.index("010100000") == a == arms.index(a)


def test_restricted_arms_and_features():
    arms = ArmSpace(syn.CANDIDATES, ["1000", ["solution_continuity", "average_solution"]])
    assert arms.masks == ("1000", "1100")
    assert arms.active_bits == (1,)  # only bit 1 differs between the arms
    assert arms.features().tolist() == [[0.0], [1.0]]
    assert len(ArmSpace(syn.CANDIDATES, max_size=2)) == 4 + 6


@pytest.mark.parametrize("cands,arms,msg", [
    (["solution_continuity", "no_such"], None, "not an interface condition"),
    (syn.CANDIDATES, [["flux_continuity"], ["flux_continuity"]], "repeats"),
    (syn.CANDIDATES, [["residual_gradient"]], "not among"),
    (syn.CANDIDATES, ["10"], "mask of 4 bits"),
    (syn.CANDIDATES, [[]], "empty"),
])
def test_bad_arms(cands, arms, msg):
    with pytest.raises(ArmError, match=msg):
        ArmSpace(cands, arms)


def test_separate_space_and_time_sets():
    cands = ["average_solution", "solution_continuity", "residual_continuity"]
    arms = ArmSpace(cands, max_size=1, kinds=("space", "time"))
    assert len(arms) == 3 * 3 and len(arms.masks[0]) == 6
    a = arms.index({"space": ["solution_continuity"], "time": ["residual_continuity"]})
    assert arms.masks[a] == "010001"
    assert arms.conditions(a) == {"space": ["solution_continuity"],
                                  "time": ["residual_continuity"]}
    assert arms.describe(a) == "space: solution_continuity; time: residual_continuity"
    assert arms.condition_names(a) == ["solution_continuity", "residual_continuity"]
    listed = ArmSpace(cands, [["average_solution"], "010001",
                              {"space": ["average_solution"], "time": ["solution_continuity"]}],
                      kinds=("space", "time"))
    assert listed.masks == ("100100", "010001", "100010")  # a plain list: both kinds
    assert listed.active_bits == (0, 1, 3, 4, 5)  # bit 2 (space rc) is never set
    assert ArmSpace.from_dict(listed.to_dict()).masks == listed.masks
    with pytest.raises(ArmError, match="arms.separate"):
        ArmSpace(cands, [{"space": ["average_solution"], "time": ["average_solution"]}])
    with pytest.raises(ArmError, match="6 bits"):
        ArmSpace(cands, ["100"], kinds=("space", "time"))
    with pytest.raises(ArmError, match="empty"):
        ArmSpace(cands, ["100000"], kinds=("space", "time"))
    with pytest.raises(ArmError, match=r"arms.list\[0\].time"):
        ArmSpace(cands, [{"space": ["average_solution"], "time": ["flux_continuity"]}],
                 kinds=("space", "time"))


def test_contexts_standardise_linear_and_log():
    space = ContextSpace([ContextParam("nu", 0.001, 0.1, "log"), ContextParam("k", 1.0, 3.0)])
    z = space.standardise({"nu": 0.01, "k": 2.5})
    assert np.allclose(z, [0.5, 0.75])
    back = space.values(z)
    assert back["nu"] == pytest.approx(0.01) and back["k"] == pytest.approx(2.5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = space.sample(rng)
        assert 0.001 <= c["nu"] <= 0.1 and 1 <= c["k"] <= 3
    assert space.in_range({"nu": 0.5, "k": 2.0}) == ["nu"]
    assert parse_context(["nu=0.01,k=2", "x=1"]) == {"nu": 0.01, "k": 2.0, "x": 1.0}
    with pytest.raises(ContextError, match="low"):
        ContextParam("nu", 0.0, 1.0, "log")
    with pytest.raises(ContextError, match="greater"):
        ContextParam("nu", 1.0, 1.0)


# -- the GP ---------------------------------------------------------------------------------
def test_product_kernel_acts_on_its_columns():
    rng = np.random.default_rng(1)
    X = np.hstack([rng.random((7, 2)), rng.integers(0, 2, (7, 3)).astype(float)])
    k = OnDims(Matern(length_scale=[0.3, 0.5], nu=2.5), (0, 1)) * OnDims(RBF(0.7), (2, 3, 4))
    want = Matern(length_scale=[0.3, 0.5], nu=2.5)(X[:, :2]) * RBF(0.7)(X[:, 2:])
    assert np.allclose(k(X), want)
    K, grad = k(X, eval_gradient=True)
    assert grad.shape == (7, 7, 3)  # two context length scales, one arm length scale
    # hyperparameters are forwarded, so cloning with new theta works (what GPR.fit does)
    k2 = k.clone_with_theta(np.log([0.2, 0.4, 2.0]))
    assert np.allclose(np.exp(k2.theta), [0.2, 0.4, 2.0])


def test_reward_model_fits_and_conditions_on_stored_hyperparameters():
    rng = np.random.default_rng(2)
    X = np.hstack([rng.random((25, 1)), rng.integers(0, 2, (25, 2)).astype(float)])
    y = np.sin(4 * X[:, 0]) + X[:, 1] - 0.5 * X[:, 2]
    m = RewardModel(make_kernel(1, [2]), seed=0, restarts=0).fit(X, y)
    mu, sd = m.predict(X)
    assert np.abs(mu - y).max() < 0.1 and (sd >= 0).all()
    again = RewardModel(make_kernel(1, [2])).fit(X, y, theta=m.theta)
    assert np.allclose(again.predict(X[:5])[0], mu[:5])  # no refit: same posterior
    fant = m.with_fantasies(X[:1] + [[0.01, 0, 0]])
    assert fant.predict(X[:1])[1][0] <= sd[0] + 1e-9  # pending rounds shrink the uncertainty


# -- learning the best arm --------------------------------------------------------------------
HELD_OUT = (np.arange(40) + 0.5) / 40


def simulate(policy: str, stages: int, rounds: int, warmup: int, seed: int = 3,
             noise: float = 0.05, refit_every: int = 5):
    """Run a bandit on the synthetic reward: hyperparameters refitted every few rounds,
    conditioned on the stored ones in between (what a campaign does with refit_every)."""
    arms = ArmSpace(syn.CANDIDATES, list(syn.ARMS))
    bandit = Bandit(arms, ContextSpace([ContextParam("z", 0.0, 1.0)]), stages=stages,
                    policy=policy, warmup=warmup, seed=seed, restarts=0)
    rng = np.random.default_rng(seed)
    obs, models, thetas, regret = [], None, None, []
    for _ in range(rounds):
        z = rng.random(1)
        choice = bandit.choose(z, models, rng, len(obs))
        true = syn.rewards(z, [arms.masks[a] for a in choice.arms], stages)
        best = syn.rewards(z, [arms.masks[a] for a in syn.best_arms(z, arms.masks, stages)],
                           stages)
        regret.append(best[-1] - true[-1])
        obs.append(Observation(z, choice.arms, [r + noise * rng.standard_normal()
                                                for r in true]))
        refit = thetas is None or len(obs) % refit_every == 0
        models = bandit.fit(obs, None if refit else thetas)
        if models:
            thetas = [m.theta for m in models]
    right = np.zeros(stages)
    for z in HELD_OUT:
        right += np.array(bandit.best(np.array([z]), models)) == \
            np.array(syn.best_arms([z], arms.masks, stages))
    return right / len(HELD_OUT), np.array(regret), warmup


@pytest.mark.parametrize("policy", ["ucb", "thompson"])
def test_one_stage_learns_best_arm_per_context(policy):
    accuracy, regret, warmup = simulate(policy, 1, rounds=40, warmup=12)
    assert accuracy[0] >= 0.9, accuracy
    # and it plays better than the random warm-up once the model decides
    assert regret[-10:].mean() < 0.5 * regret[:warmup].mean(), regret


@pytest.mark.parametrize("policy", ["ucb", "thompson"])
def test_two_stage_learns_best_arm_pair_per_context(policy):
    accuracy, regret, warmup = simulate(policy, 2, rounds=50, warmup=16)
    assert (accuracy >= 0.9).all(), accuracy  # stage 1 and stage 2 given stage 1
    assert regret[-10:].mean() < 0.5 * regret[:warmup].mean(), regret


def test_warmup_is_random_and_ucb_spreads_pending_rounds():
    arms = ArmSpace(syn.CANDIDATES, list(syn.ARMS))
    bandit = Bandit(arms, ContextSpace([ContextParam("z", 0.0, 1.0)]), warmup=3, restarts=0)
    rng = np.random.default_rng(0)
    assert bandit.choose([0.5], None, rng, 0).how == "warmup"
    obs = [Observation(np.array([z]), [a], [float(syn.one_stage([[z]], [arms.masks[a]])[0])])
           for z, a in zip(np.linspace(0, 1, 12), [0, 1, 2, 3, 4, 5] * 2)]
    models = bandit.fit(obs)
    first = bandit.choose([0.5], models, rng, len(obs))
    assert first.how == "ucb"
    # the same context again with the first choice in flight: UCB's bonus there shrinks
    again = bandit.choose([0.5], models, rng, len(obs), pending=[(np.array([0.5]), first.arms)])
    assert again.scores[0][first.arms[0]] < first.scores[0][first.arms[0]]

"""METALIC contextual bandits: one GP reward model per training stage.

One-stage: a GP over (context, arm) predicts the reward of a whole run; a round draws a
context, picks the arm by UCB or Thompson sampling, runs, and the GP is refitted.

Two-stage (METALIC's sequential bandit): the Adam stage and the L-BFGS stage each get an arm.
GP 1 models the stage-1 reward over (context, arm 1); GP 2 models the final reward over
(context, arm 1, arm 2), so the second choice knows the first. Choices are greedy per stage:
arm 1 from GP 1, then arm 2 from GP 2 given arm 1.

Everything here is pure (no files): :mod:`ddpinn.metalic.campaign` stores the rounds and calls
:meth:`Bandit.fit` / :meth:`Bandit.choose` under its lock.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ddpinn.metalic.arms import ArmSpace
from ddpinn.metalic.contexts import ContextSpace
from ddpinn.metalic.model import RewardModel, make_kernel

POLICIES = ("ucb", "thompson")


@dataclass
class Observation:
    """One finished round: standardised context, arm per stage, reward per stage."""

    z: np.ndarray
    arms: list
    rewards: list


@dataclass
class Choice:
    """A decision: arm per stage, and how it was made."""

    arms: list
    how: str  # "warmup" | "ucb" | "thompson" | "random"
    scores: list = field(default_factory=list)  # per stage: the acquisition values over arms


class Bandit:
    """One- or two-stage contextual bandit over an :class:`ArmSpace` and a
    :class:`ContextSpace`.

    Parameters
    ----------
    arms, contexts : the campaign's arm and context spaces
    stages : 1 or 2
    policy : "ucb" | "thompson"
    beta : UCB exploration, score = mean + sqrt(beta) * sd
    warmup : rounds chosen at random before the model is used
    arm_kernel : "hamming" (one length scale over the mask bits) | "ard" (one per bit)
    seed : seed of the GP hyperparameter restarts
    restarts : GP optimizer restarts per fit
    """

    def __init__(self, arms: ArmSpace, contexts: ContextSpace, stages: int = 1,
                 policy: str = "ucb", beta: float = 4.0, warmup: int = 5,
                 arm_kernel: str = "hamming", seed: int = 0, restarts: int = 2):
        if stages not in (1, 2):
            raise ValueError(f"stages = {stages!r}; METALIC has one- and two-stage bandits")
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}; choose one of: {', '.join(POLICIES)}")
        self.arms, self.contexts = arms, contexts
        self.stages, self.policy, self.beta = stages, policy, float(beta)
        self.warmup, self.arm_kernel = int(warmup), arm_kernel
        self.seed, self.restarts = int(seed), int(restarts)

    # -- inputs --------------------------------------------------------------------------
    def inputs(self, stage: int, z, arm_rows) -> np.ndarray:
        """Model inputs of ``stage`` (0-based): rows ``[z | features(a1) (| features(a2))]``.

        z : (n, d_c); arm_rows : (n, stage + 1) arm indices
        """
        z = np.atleast_2d(np.asarray(z, dtype=float))
        arm_rows = np.asarray(arm_rows, dtype=int).reshape(len(z), -1)
        parts = [z] + [self.arms.features(arm_rows[:, s]) for s in range(stage + 1)]
        return np.hstack(parts)

    def _kernel(self, stage: int):
        return make_kernel(len(self.contexts), [self.arms.n_features] * (stage + 1),
                           self.arm_kernel)

    # -- fitting -------------------------------------------------------------------------
    def fit(self, observations, thetas=None) -> list | None:
        """Reward models per stage from finished rounds, or None with fewer than 2.

        thetas : optional list (per stage) of stored log hyperparameters: condition on the
            data without re-optimising (fast, and identical wherever it is done)
        """
        obs = list(observations)
        if len(obs) < 2:
            return None
        z = np.array([o.z for o in obs], dtype=float)
        arms = np.array([o.arms[: self.stages] for o in obs], dtype=int)
        models = []
        for s in range(self.stages):
            y = np.array([o.rewards[s] for o in obs], dtype=float)
            theta = thetas[s] if thetas and s < len(thetas) else None
            m = RewardModel(self._kernel(s), seed=self.seed + s, restarts=self.restarts)
            models.append(m.fit(self.inputs(s, z, arms[:, : s + 1]), y, theta))
        return models

    # -- decisions -----------------------------------------------------------------------
    def choose(self, z, models, rng: np.random.Generator, n_done: int,
               pending=()) -> Choice:
        """Arms for a round at standardised context ``z``.

        n_done : finished rounds so far (random choice while below ``warmup``)
        pending : (z, arms) of rounds issued but not finished; with UCB they are added to
            the models at their predicted mean, so concurrent rounds spread out
        """
        n = len(self.arms)
        if models is None or n_done < max(self.warmup, 2):
            how = "warmup" if n_done < self.warmup else "random"
            return Choice([int(rng.integers(n)) for _ in range(self.stages)], how)
        if self.policy == "ucb" and pending:
            pz = np.array([p[0] for p in pending], dtype=float)
            pa = np.array([p[1][: self.stages] for p in pending], dtype=int)
            models = [m.with_fantasies(self.inputs(s, pz, pa[:, : s + 1]))
                      for s, m in enumerate(models)]
        chosen, scores = [], []
        zz = np.repeat(np.atleast_2d(z), n, 0)
        for s, m in enumerate(models):
            X = self.inputs(s, zz, _rows(chosen[:s], n))
            if self.policy == "ucb":
                mu, sd = m.predict(X)
                score = mu + np.sqrt(self.beta) * sd
            else:
                score = m.sample(X, rng)
            chosen.append(int(np.argmax(score)))
            scores.append([float(v) for v in score])
        return Choice(chosen, self.policy, scores)

    def posterior(self, z, models, given=()) -> list:
        """Per stage, (mean, sd) over all arms at context z; stage 2 given the best (or
        ``given``) arm 1. Returns [(mu, sd, best), ...]."""
        n = len(self.arms)
        zz = np.repeat(np.atleast_2d(z), n, 0)
        out, chosen = [], list(given)
        for s, m in enumerate(models):
            mu, sd = m.predict(self.inputs(s, zz, _rows(chosen[:s], n)))
            best = int(np.argmax(mu))
            if len(chosen) <= s:
                chosen.append(best)
            out.append((mu, sd, best))
        return out

    def best(self, z, models) -> list:
        """Arm per stage with the highest posterior mean (stage 2 given stage 1's best)."""
        return [b for _, _, b in self.posterior(z, models)]


def _rows(fixed, n: int) -> np.ndarray:
    """(n, len(fixed) + 1) arm rows: the fixed earlier-stage arms, then every arm 0..n-1."""
    fixed = np.asarray(fixed, dtype=int).reshape(1, -1)
    return np.column_stack([np.repeat(fixed, n, 0), np.arange(n)])

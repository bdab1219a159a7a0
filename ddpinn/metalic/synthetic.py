"""Synthetic reward functions with a known best arm per context.

They test the bandits (tests/unit/test_metalic_bandit.py) and let a campaign run without
training (``[reward] source = "synthetic"``), which is how the campaign machinery, the state
file and the report's regret plot are exercised cheaply.

Each function takes the standardised context ``z`` (in [0, 1]^d) and arm masks (strings of
0/1 over the campaign's candidates) and returns the noise-free reward. ``ideal_mask`` is the
heart of both: a smooth path through [0, 1]^4 along the first context coordinate, so that the
best arm is the mask nearest to it and switches at known contexts.
"""
from __future__ import annotations

import numpy as np

# Four candidate conditions; any four names work, these are the defaults of the tests.
CANDIDATES = ("solution_continuity", "average_solution", "residual_continuity",
              "flux_continuity")
ARMS = ("1000", "1100", "1010", "1110", "0110", "1001")
STEEP = 0.06


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def ideal_mask(z) -> np.ndarray:
    """(n, d) standardised contexts -> (n, 4) ideal mask in [0, 1]^4.

    Bit 0 always wanted; bit 1 wanted above z0 = 0.35; bit 2 wanted below z0 = 0.65; bit 3 a
    little (never worth it). Best arm: 1010 for z0 < 0.35, 1110 in between, 1100 above 0.65.
    """
    z0 = np.atleast_2d(np.asarray(z, dtype=float))[:, 0]
    return np.stack([np.ones_like(z0), _sig((z0 - 0.35) / STEEP), _sig((0.65 - z0) / STEEP),
                     np.full_like(z0, 0.2)], axis=1)


def _bits(masks) -> np.ndarray:
    return np.array([[ch == "1" for ch in m] for m in masks], dtype=float)


def one_stage(z, masks) -> np.ndarray:
    """Reward of arms ``masks`` at contexts ``z``: (n,) for n pairs (z_i, masks[i])."""
    b = _bits(masks)
    m = ideal_mask(z)
    z0 = np.atleast_2d(np.asarray(z, dtype=float))[:, 0]
    return 4.0 + 0.5 * np.sin(3.0 * z0) - 2.0 * ((b - m) ** 2).sum(1)


def two_stage(z, masks1, masks2) -> tuple:
    """(stage-1 reward, stage-2 reward) of arm pairs at contexts z, each (n,).

    Stage 1 is :func:`one_stage`. Stage 2 prefers the mirror image of stage 1's ideal
    (bits 1 and 2 swapped) and rewards keeping bit 0 of the stage-1 arm, so the best second
    arm depends on both the context and the first arm.
    """
    r1 = one_stage(z, masks1)
    b1, b2 = _bits(masks1), _bits(masks2)
    m = ideal_mask(z)[:, [0, 2, 1, 3]]
    r2 = 3.0 + 0.5 * r1 - 2.0 * ((b2 - m) ** 2).sum(1) + 0.8 * (b1[:, 0] * b2[:, 0])
    return r1, r2


FUNCTIONS = {"one_stage": one_stage, "two_stage": two_stage}


def best_arms(z, masks, stages: int = 1) -> list:
    """Greedy best arm indices per stage at one context z: [a1] or [a1, a2]."""
    masks = list(masks)
    z = np.atleast_2d(z)
    zz = np.repeat(z, len(masks), 0)
    if stages == 1:
        return [int(np.argmax(one_stage(zz, masks)))]
    r1, _ = two_stage(zz, masks, masks)
    a1 = int(np.argmax(r1))
    _, r2 = two_stage(zz, [masks[a1]] * len(masks), masks)
    return [a1, int(np.argmax(r2))]


def rewards(z, masks_per_stage, stages: int = 1) -> list:
    """Noise-free reward(s) of one round: [r] or [r1, r2]."""
    z = np.atleast_2d(z)
    if stages == 1:
        return [float(one_stage(z, [masks_per_stage[0]])[0])]
    r1, r2 = two_stage(z, [masks_per_stage[0]], [masks_per_stage[1]])
    return [float(r1[0]), float(r2[0])]

"""Point sets in the unit cube [0, 1)^d: a registry keyed by ``points.sampling``.

``uniform`` draws independent pseudo-random points. ``sobol`` and ``halton`` are scrambled
low-discrepancy sequences (``scipy.stats.qmc``): they cover the cube more evenly than random
points, so a loss summed over them is a better quadrature of its integral and fits between
the points more closely (Wu et al., "A comprehensive study of non-adaptive and residual-based
adaptive sampling for physics-informed neural networks", 2023). The scrambling is seeded from
the caller's generator, so a set stays a pure function of its key (sid, interface, epoch):
the same points on any rank count.
"""
from __future__ import annotations

import math

import numpy as np

UNIT_SAMPLERS: dict = {}


def unit_sampler(name: str):
    """Decorator: make ``fn(n, d, rng) -> ndarray (n, d)`` in [0, 1) the choice ``name``
    of ``points.sampling``."""
    def deco(fn):
        UNIT_SAMPLERS[name] = fn
        return fn
    return deco


@unit_sampler("uniform")
def uniform(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Independent uniform points: (n, d)."""
    return rng.random((n, d))


@unit_sampler("sobol")
def sobol(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """The first n points of a scrambled Sobol sequence of 2^ceil(log2 n): (n, d)."""
    from scipy.stats import qmc

    if n == 0:
        return np.empty((0, d))
    return qmc.Sobol(d, scramble=True, seed=rng).random_base2(math.ceil(math.log2(n)))[:n]


@unit_sampler("halton")
def halton(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n points of a scrambled Halton sequence: (n, d)."""
    from scipy.stats import qmc

    return qmc.Halton(d, scramble=True, seed=rng).random(n)


def unit_samples(sampling: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n points of the set ``sampling`` (a name in :data:`UNIT_SAMPLERS`) in [0, 1)^d."""
    return UNIT_SAMPLERS[sampling](n, d, rng)

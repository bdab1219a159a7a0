"""How collocation points change during training: a registry keyed by ``points.resample``
(and by a stage's ``resample``, which may name another one for that stage).

``uniform`` redraws every point every ``points.resample_every`` steps (a new sampling epoch).
``r3`` is retain-resample-release (Daw et al., "Mitigating propagation failures in physics-
informed neural networks using retain-resample-release (R3) sampling", 2023): every k steps,
per subdomain, the interior points whose residual magnitude is above the subdomain's mean are
retained, the others released and replaced by fresh points (of the set ``points.sampling``).
The fresh points come from a generator keyed by (seed, step, sid), so they are the same on any
rank count; the number of interior points stays constant, so the padded batch keeps its shape.
"""
from __future__ import annotations

import numpy as np

from ddpinn.geometry import sample_box
from ddpinn.io.config_stages import resamplers_named
from ddpinn.training.points import TAG_R3, rng_for

RESAMPLERS = {}


def resampler(name: str, adapts_points: bool = False):
    """Decorator: make ``fn(solver, step, every) -> bool`` (points changed) a choice of
    ``points.resample``. ``adapts_points``: the interior points it leaves are state, not a
    function of the sampling epoch, so checkpoints and precision switches carry them."""
    def deco(fn):
        fn.adapts_points = adapts_points
        RESAMPLERS[name] = fn
        return fn
    return deco


def adapted_points(cfg) -> bool:
    """Whether a resampler of the case (``points.resample`` or a stage's own) keeps interior
    points that must be checkpointed."""
    return any(RESAMPLERS[name].adapts_points for name in resamplers_named(cfg))


@resampler("uniform")
def redraw_all(solver, step: int, every: int) -> bool:
    """Collective. All points of sampling epoch ``step // every``."""
    return solver.resample(step // every)


@resampler("r3", adapts_points=True)
def retain_resample_release(solver, step: int, every: int) -> bool:
    """Collective. R3 update of the interior points at steps every, 2 every, ..."""
    if step == 0 or step % every:
        return False
    return solver.r3_update(step)


def r3_points(points: np.ndarray, magnitude: np.ndarray, box, seed: int, step: int,
              sid: int, sampling: str = "uniform") -> np.ndarray:
    """One R3 update of a subdomain's interior points.

    Parameters
    ----------
    points : ndarray (n, d), the current interior points
    magnitude : ndarray (n,), residual magnitude at them
    box : Box of the subdomain
    seed, step, sid : key of the fresh points' generator
    sampling : str, the set the fresh points come from (``points.sampling``)

    Returns
    -------
    ndarray (n, d): the retained points (|r| above the mean, in their order), then fresh
    points of the set ``sampling`` in ``box`` in place of the released ones.
    """
    keep = magnitude > magnitude.mean()
    fresh = sample_box(box, len(points) - int(keep.sum()), rng_for(seed, TAG_R3, step, sid),
                       sampling)
    return np.concatenate([points[keep], fresh])

"""Learning-rate schedules: a registry of ``factor(stage, step) -> float``.

A schedule is the multiplier of a stage's ``lr`` after ``step`` of its steps; the trainer
hands ``stage.lr * factor`` (times the divergence back-off) to the optimizer's ``set_lr``
before every step. Pure arithmetic: this module imports nothing of ddpinn, so the case-file
validation (:mod:`ddpinn.io.config`) can list the names without an import cycle.

Add one with::

    @register_schedule("linear")
    def linear(stage, step):
        return max(0.0, 1.0 - step / max(stage.steps, 1))
"""
from __future__ import annotations

import math

SCHEDULES: dict = {}


def register_schedule(name: str):
    """Decorator: register ``factor(stage, step) -> float`` as ``stages.schedule = name``."""
    def deco(fn):
        SCHEDULES[name] = fn
        return fn
    return deco


@register_schedule("constant")
def constant(stage, step: int) -> float:
    return 1.0


@register_schedule("exponential")
def exponential(stage, step: int) -> float:
    """``decay_rate ** (step / decay_steps)``."""
    return stage.decay_rate ** (step / stage.decay_steps)


@register_schedule("cosine")
def cosine(stage, step: int) -> float:
    """Half a cosine from 1 to 0 over the stage's steps."""
    return 0.5 * (1 + math.cos(math.pi * min(step, stage.steps) / max(stage.steps, 1)))


def lr_factor(stage, step: int) -> float:
    """Learning-rate multiplier of ``stage`` after ``step`` of its steps."""
    return SCHEDULES[stage.schedule](stage, step)

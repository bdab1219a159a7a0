"""Stopping rules of a stage: "until 1e-6 or 20 minutes" (``stages.target_loss``,
``min_improvement`` with ``patience``, ``max_minutes``; ``steps`` stays the upper bound).

The rules see only what every rank has alike after a step's record: the global loss the
optimizer adapter recorded (any adapter) and the stage's wall minutes on rank 0's clock,
reduced with the step times (:meth:`ddpinn.training.trainer.Trainer._step_times`). So every
rank ends the stage at the same step. Their state (best loss, steps since it improved,
minutes used, the rule that fired) goes into the checkpoint scalars: a resumed run, on any
rank count, ends the stage where an uninterrupted one would (for wall time, the minutes used
before the restart count).
"""
from __future__ import annotations

import math

# name -> test(stage, rules, loss, minutes) -> bool; checked in this order after every step.
STOP_RULES: dict = {}


def register_rule(name: str):
    """Decorator: a stopping rule ``name`` (also the label in the log and metrics.jsonl)."""
    def deco(fn):
        STOP_RULES[name] = fn
        return fn
    return deco


@register_rule("target_loss")
def _target(stage, rules, loss: float, minutes: float) -> bool:
    return stage.target_loss is not None and loss <= stage.target_loss


@register_rule("min_improvement")
def _plateau(stage, rules, loss: float, minutes: float) -> bool:
    return stage.min_improvement is not None and rules.wait >= stage.patience


@register_rule("max_minutes")
def _wall(stage, rules, loss: float, minutes: float) -> bool:
    return stage.max_minutes is not None and minutes >= stage.max_minutes


# What ended a stage that ran all its steps.
STEPS = "steps"


class StageRules:
    """The stopping-rule state of one stage.

    ``best`` is the reference loss of the plateau rule: the loss of the last step that
    improved on the previous reference by more than ``min_improvement`` (relative); ``wait``
    counts the steps since. With ``wait >= patience`` the best loss has improved by less
    than ``min_improvement`` over the last ``patience`` steps, and the stage ends.
    """

    def __init__(self, stage):
        self.stage = stage
        self.best = math.inf
        self.wait = 0
        self.ended_by = ""  # name of the rule that ended the stage ("" while it runs)

    def after_step(self, loss: float, minutes: float) -> str:
        """Update with a step's global loss and the stage's minutes (the same on every rank);
        returns the name of the rule that ends the stage now, or ""."""
        floor = self.stage.min_improvement or 0.0
        if self.best == math.inf or self.best - loss > floor * abs(self.best):
            self.best, self.wait = loss, 0
        else:
            self.wait += 1
        for name, fires in STOP_RULES.items():
            if fires(self.stage, self, loss, minutes):
                self.ended_by = name
                break
        return self.ended_by

    # -- checkpoint scalars -----------------------------------------------------------------
    def state(self) -> dict:
        return {"stage_best": None if self.best == math.inf else float(self.best),
                "stage_wait": int(self.wait), "stage_ended_by": self.ended_by}

    def load_state(self, scalars: dict) -> None:
        best = scalars.get("stage_best")
        self.best = math.inf if best is None else float(best)
        self.wait = int(scalars.get("stage_wait", 0))
        self.ended_by = str(scalars.get("stage_ended_by", ""))

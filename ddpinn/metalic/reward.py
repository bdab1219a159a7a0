"""Rewards of finished rounds: -log10 of an error, clipped to [floor, cap].

Sources (``[reward] source``):

``errors``     the relative L2 error ``key`` (e.g. ``l2_u``) of the run's ``errors.json``
               (exact solution or reference data of the case);
``metric``     the last value of column ``key`` of the run's ``metrics.jsonl`` (e.g. a
               validation or training residual, for PDEs without any reference);
``reference``  the relative L2 error of the run's ``solution.nc`` against a reference that
               :mod:`ddpinn.references.burgers` computes at the round's PDE parameters (Burgers
               by Cole-Hopf: the case's data file holds one viscosity only);
``synthetic``  a known function of context and arms plus noise (no training).

Two-stage campaigns also need the reward of stage 1 (Adam): the last evaluation of ``key``
inside stage 1 in ``metrics.jsonl`` (the campaign asks the run to evaluate one step before the
stage ends); without one, and for ``reference``/``synthetic``, stage 1 gets the final reward.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddpinn.io.metrics import read_metrics
from ddpinn.metalic.campaign import reward_from_value
from ddpinn.parallel.errors import EXIT_RUNTIME


def _metrics_rows(run_dir: Path) -> list:
    path = run_dir / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []  # a torn last line is dropped


def _last(rows, key, stage=None):
    for row in reversed(rows):
        if key in row and (stage is None or row.get("stage") == stage):
            return float(row[key])
    return None


def final_value(campaign, rnd: dict, run_dir: Path) -> float:
    """The error (or residual) of a finished run that the reward is made of."""
    src, key = campaign.reward.source, campaign.reward.key
    if src == "errors":
        path = run_dir / "errors.json"
        if not path.is_file():
            raise ValueError(f"the run wrote no {path}")
        errors = json.loads(path.read_text())
        if key not in errors:
            raise ValueError(f"{path} has no {key!r} (it has: {', '.join(errors) or 'nothing'}: "
                             f"without exact solution or reference data use reward.source = "
                             f"\"metric\" or \"reference\")")
        return float(errors[key])
    if src == "metric":
        value = _last(_metrics_rows(run_dir), key)
        if value is None:
            raise ValueError(f"{run_dir / 'metrics.jsonl'} has no column {key!r}")
        return value
    if src == "reference":
        return reference_error(campaign, rnd, run_dir)
    raise ValueError(f"reward source {src!r} reads no run")


def reference_error(campaign, rnd: dict, run_dir: Path) -> float:
    """Relative L2 error of ``solution.nc`` against the campaign's computed reference."""
    from ddpinn.io.netcdf import read_solution
    from ddpinn.references.burgers import REFERENCES

    sol = read_solution(run_dir / "solution.nc")
    field = campaign.reward.key[3:] if campaign.reward.key.startswith("l2_") else "u"
    if field not in sol["fields"]:
        raise ValueError(f"solution.nc has no field {field!r}")
    _, fn = REFERENCES[campaign.reward.reference]
    params = {**rnd["context"]}
    truth = fn(sol["axes"], params)
    pred = sol["fields"][field]
    return float(np.linalg.norm(pred - truth) / max(np.linalg.norm(truth), 1e-300))


def run_result(campaign, rnd: dict, exit_code: int, log_tail: str = "") -> dict:
    """Outcome of a training run: rewards per stage, or an error.

    A run that diverged or failed at run time (exit 3) is a bad arm, not a broken round: it
    gets the floor reward. Other failures are errors (the round is re-run or marked failed).
    """
    run_dir = Path(rnd["run_dir"])
    stages = campaign.settings.stages
    floor, cap = campaign.reward.floor, campaign.reward.cap
    if exit_code == EXIT_RUNTIME:
        return {"rewards": [floor] * stages, "exit": exit_code,
                "raw": {"diverged": True, "log": log_tail[-500:]}}
    if exit_code != 0:
        return {"rewards": None, "exit": exit_code,
                "error": f"training exited with status {exit_code}: {_last_line(log_tail)}"}
    try:
        value = final_value(campaign, rnd, run_dir)
    except (OSError, ValueError, KeyError) as exc:
        return {"rewards": None, "exit": exit_code, "error": f"no reward: {exc}"}
    raw = {"value": value}
    errors = run_dir / "errors.json"
    if campaign.reward.source == "errors" and errors.is_file():
        raw["errors"] = json.loads(errors.read_text())
    rewards = [reward_from_value(value, cap, floor)]
    if stages == 2:
        v1 = None
        if campaign.reward.source in ("errors", "metric"):
            v1 = _last(_metrics_rows(run_dir), campaign.reward.key, stage=0)
        raw["stage1_value"] = v1 if v1 is not None else value
        rewards.insert(0, reward_from_value(raw["stage1_value"], cap, floor))
    return {"rewards": rewards, "exit": 0, "raw": raw}


def synthetic_result(campaign, rnd: dict) -> dict:
    """Reward of a synthetic round: the known function plus seeded noise, with its regret."""
    from ddpinn.metalic import synthetic

    stages = campaign.settings.stages
    z = np.asarray(rnd["z"], dtype=float)
    masks = campaign.arms.masks
    true = synthetic.rewards(z, rnd["masks"], stages)
    best = synthetic.best_arms(z, masks, stages)
    best_true = synthetic.rewards(z, [masks[a] for a in best], stages)
    rng = np.random.default_rng([campaign.settings.seed, rnd["id"], rnd["attempts"], 7])
    noisy = [v + campaign.reward.noise * float(rng.standard_normal()) for v in true]
    return {"rewards": noisy, "exit": 0,
            "raw": {"true": true, "best_arms": best, "best_true": best_true,
                    "regret": float(best_true[-1] - true[-1])}}


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][-300:] if lines else "(no output)"

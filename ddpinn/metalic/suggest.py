"""What a campaign has learnt: the best arm by posterior mean at given PDE parameters.

Used by ``ddpinn metalic suggest`` and by case files with ``conditions = "metalic:PATH"``
(:func:`resolve_conditions`). Reads the state file without locking (it is always complete)
and conditions the GP on the finished rounds with the stored hyperparameters, so every rank of
a run resolves the same arm without refitting.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ddpinn.io.config import ConfigError
from ddpinn.metalic.arms import ArmSpace
from ddpinn.metalic.bandit import Bandit
from ddpinn.metalic.contexts import ContextError, ContextSpace
from ddpinn.metalic.state import StateFile, observations


def bandit_of(state: dict) -> Bandit:
    """The bandit a state describes (its spec), for predictions."""
    spec = state["spec"]
    return Bandit(ArmSpace.from_dict(spec["arms"]), ContextSpace.from_dict(spec["contexts"]),
                  stages=spec["stages"], arm_kernel=spec.get("arm_kernel", "hamming"))


def models(state: dict, bandit: Bandit | None = None):
    bandit = bandit or bandit_of(state)
    stored = state.get("models") or {}
    return bandit.fit(observations(state), stored.get("thetas"))


def state_path_of(path) -> Path:
    """A campaign file, a campaign directory or a state file -> the state file."""
    path = Path(path)
    if path.suffix == ".toml":
        from ddpinn.metalic.campaign import load_campaign

        return load_campaign(path, check_case=False).state_path
    if path.is_dir():
        return path / "state.json"
    return path


def suggest(state: dict, context: dict, top: int = 3) -> dict:
    """Best arm per stage at ``context`` by posterior mean, with the runners-up.

    Returns {"context", "n_rounds", "out_of_range", "stages": [{"arm", "mask",
    "conditions", "mean", "sd", "ranking": [(arm, mask, mean, sd), ...]}, ...]}.
    """
    bandit = bandit_of(state)
    ms = models(state, bandit)
    n = len(observations(state))
    if ms is None:
        raise ConfigError(f"the campaign has {n} finished round(s); at least 2 are needed "
                          f"before it can suggest conditions")
    try:
        z = bandit.contexts.standardise(context)
    except ContextError as exc:
        raise ConfigError(str(exc)) from None
    out = {"context": {k: float(context[k]) for k in bandit.contexts.names}, "n_rounds": n,
           "out_of_range": bandit.contexts.in_range(context), "stages": []}
    arms = bandit.arms
    for mu, sd, best in bandit.posterior(z, ms):
        order = np.argsort(-mu)[:max(1, top)]
        out["stages"].append({
            "arm": best, "mask": arms.masks[best], "conditions": arms.conditions(best),
            "mean": float(mu[best]), "sd": float(sd[best]),
            "ranking": [(int(a), arms.masks[a], float(mu[a]), float(sd[a])) for a in order]})
    return out


def resolve_conditions(path, pde_name: str, params: dict):
    """Interface conditions for ``conditions = "metalic:PATH"``: the best arm of the campaign
    at the case's PDE parameters: a list, or a {space, time} table for a campaign that learns
    them apart. Raises :class:`ConfigError` with a clear message."""
    where = f"field 'interface.conditions' = \"metalic:{path}\""
    try:
        sp = state_path_of(path)
        state = StateFile(sp).read()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if state is None:
        raise ConfigError(f"{where}: no campaign state at {str(sp)!r} (run the campaign first: "
                          f"ddpinn metalic run CAMPAIGN.toml)")
    spec = state["spec"]
    if spec.get("pde") and spec["pde"] != pde_name:
        raise ConfigError(f"{where}: the campaign learnt conditions for PDE {spec['pde']!r}, "
                          f"not {pde_name!r}")
    names = list(spec["contexts"])
    missing = [n for n in names if n not in params]
    if missing:
        raise ConfigError(f"{where}: the campaign's contexts {', '.join(missing)} are not "
                          f"parameters of PDE {pde_name!r}")
    try:
        s = suggest(state, {n: float(params[n]) for n in names}, top=1)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if len(s["stages"]) > 1:
        raise ConfigError(f"{where}: a two-stage campaign picks one condition set per "
                          f"training stage, which needs per-stage conditions in [[stages]]; "
                          f"use 'ddpinn metalic suggest' and set the stages' conditions")
    return s["stages"][0]["conditions"]  # a list, or a {space, time} table

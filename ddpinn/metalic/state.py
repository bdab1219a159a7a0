"""The bandit state of a campaign: ONE JSON file, locked and written atomically.

Every change is a transaction: take an exclusive ``fcntl.flock`` on the sidecar
``state.json.lock``, read ``state.json``, change it, write it to a temporary file, fsync and
rename it over the old one (:func:`ddpinn.io.atomic.atomic_write_text`), release the lock.
So several workers finishing at once queue on the lock and each round is recorded, and a reader
(``suggest``, ``report``, a case resolving ``metalic:PATH``) always sees a complete file without
locking. (``flock`` works on local file systems and NFSv4; Lustre needs the ``flock`` mount
option.)

Rounds go ``pending -> running -> done`` (or ``failed`` after ``run.max_attempts`` failed
runs). A running round carries its claim: host, pid, Slurm job, a token and a heartbeat the
worker refreshes while training. A claim is stale when its process is gone (same host) or its
heartbeat is older than ``run.lease``; stale rounds go back to ``pending`` and are re-run with
the same context and arms before any new round is issued. Recorded rounds are never dropped.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path

import numpy as np

from ddpinn.io.atomic import atomic_write_text
from ddpinn.metalic.bandit import Observation
from ddpinn.metalic.campaign import CampaignError

VERSION = 1
SPEC_KEYS = ("stages", "arms", "contexts", "arm_kernel", "reward")


class StateFile:
    """``state.json`` and its lock file."""

    def __init__(self, path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> dict | None:
        """The current state without locking (complete thanks to the atomic rename), or
        None when there is none yet."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CampaignError(f"state file {str(self.path)!r} is not valid JSON ({exc}); "
                                f"it was not written by ddpinn") from None

    @contextlib.contextmanager
    def transaction(self, create=None):
        """Lock, read (or ``create()`` a new state), yield it for changes, write it back.

        If the body raises, nothing is written. The file is rewritten only if it changed.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                state = self.read()
                before = None if state is None else json.dumps(state, sort_keys=True)
                if state is None:
                    if create is None:
                        raise CampaignError(f"no campaign state at {str(self.path)!r}")
                    state = create()
                yield state
                after = json.dumps(state, sort_keys=True)
                if after != before:
                    atomic_write_text(self.path, json.dumps(state, indent=1) + "\n")
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def new_state(campaign) -> dict:
    return {"version": VERSION, "spec": campaign.spec(), "created": time.time(),
            "rounds": [], "models": None}


def check_spec(state: dict, campaign) -> None:
    """The state belongs to this campaign (same arms, contexts, stages, reward)."""
    if state.get("version") != VERSION:
        raise CampaignError(f"state file version {state.get('version')!r}; this ddpinn reads "
                            f"version {VERSION}")
    spec, now = state.get("spec", {}), campaign.spec()
    for key in SPEC_KEYS:
        if spec.get(key) != now.get(key):
            raise CampaignError(
                f"campaign {str(campaign.path)!r} no longer matches its state "
                f"{str(campaign.state_path)!r}: '{key}' changed ({spec.get(key)!r} -> "
                f"{now.get(key)!r}); use a new campaign.dir (or --dir) for a different campaign")


# -- claims ---------------------------------------------------------------------------------
def claimant(with_pid: bool = True) -> dict:
    """Who claims a round: host, pid (None for ``next`` printing a command), Slurm job."""
    now = time.time()
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '?')}"
    return {"host": socket.gethostname(), "pid": os.getpid() if with_pid else None, "job": job,
            "token": uuid.uuid4().hex, "at": now, "heartbeat": now}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(claim: dict | None, lease: float, now: float | None = None) -> bool:
    if not claim:
        return True
    now = time.time() if now is None else now
    if claim.get("pid") and claim.get("host") == socket.gethostname() and \
            not _pid_alive(int(claim["pid"])):
        return True
    return now - float(claim.get("heartbeat", 0)) > lease


def _who(claim: dict) -> str:
    pid = f":{claim['pid']}" if claim.get("pid") else ""
    job = f" (job {claim['job']})" if claim.get("job") else ""
    return f"{claim.get('host')}{pid}{job}"


def release_stale(campaign, state: dict, now: float | None = None) -> list:
    """Running rounds whose claim is stale go back to pending; returns their ids."""
    out = []
    for r in state["rounds"]:
        claim = r.get("claim") or {}
        # a claim of `next` (no pid, no heartbeat: the user runs the command) lasts at least
        # as long as a run may take
        lease = campaign.run.lease if claim.get("pid") else \
            max(campaign.run.lease, campaign.run.timeout)
        if r["status"] == "running" and is_stale(claim, lease, now):
            r["log"].append(f"{_ts()} stale claim of {_who(r['claim'] or {})} released")
            r["status"], r["claim"] = "pending", None
            out.append(r["id"])
    return out


def _ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


# -- rounds ---------------------------------------------------------------------------------
def observations(state: dict) -> list:
    """Finished rounds as bandit observations (in round order)."""
    return [Observation(np.asarray(r["z"], dtype=float), list(r["arms"]), list(r["rewards"]))
            for r in state["rounds"] if r["status"] == "done" and r.get("rewards")]


def models_of(campaign, state: dict):
    """The reward models of the state (conditioned with the stored hyperparameters)."""
    m = state.get("models") or {}
    return campaign.bandit().fit(observations(state), m.get("thetas"))


def issue(campaign, state: dict) -> dict:
    """Append a new round: its context (drawn from a generator seeded by the campaign seed
    and the round id) and its arms (warm-up: random; then UCB or Thompson on the GP models
    of the finished rounds, aware of the rounds in flight)."""
    rid = len(state["rounds"])
    rng = np.random.default_rng([campaign.settings.seed, rid])
    context = campaign.contexts.sample(rng)
    z = campaign.contexts.standardise(context)
    bandit = campaign.bandit()
    obs = observations(state)
    models = models_of(campaign, state)
    flying = [(np.asarray(r["z"]), r["arms"]) for r in state["rounds"]
              if r["status"] in ("pending", "running")]
    choice = bandit.choose(z, models, rng, len(obs), flying)
    arms = choice.arms
    r = {"id": rid, "status": "pending", "context": context, "z": [float(v) for v in z],
         "arms": arms, "masks": [campaign.arms.masks[a] for a in arms],
         "conditions": [campaign.arms.conditions(a) for a in arms], "how": choice.how,
         "n_obs": len(obs), "issued": time.time(), "attempts": 0, "claim": None,
         "run_dir": str(campaign.run_dir(rid)), "rewards": None, "raw": None,
         "log": [f"{_ts()} issued ({choice.how}, {len(obs)} finished rounds)"]}
    state["rounds"].append(r)
    return r


def claim(campaign, state: dict, who: dict, issue_new: bool = True) -> dict | None:
    """Claim a round for ``who``: a pending one (re-run), else a new one while the budget
    allows. Returns the round (now running) or None when there is nothing to do."""
    release_stale(campaign, state)
    r = next((r for r in state["rounds"] if r["status"] == "pending"), None)
    if r is None:
        if not issue_new or len(state["rounds"]) >= campaign.settings.rounds:
            return None
        r = issue(campaign, state)
    r["status"], r["claim"] = "running", dict(who)
    r["attempts"] += 1
    r["log"].append(f"{_ts()} claimed by {_who(who)} (attempt {r['attempts']})")
    return r


def _owned(state: dict, rid: int, token: str | None) -> dict | None:
    r = state["rounds"][rid] if 0 <= rid < len(state["rounds"]) else None
    if r is None or r["status"] != "running":
        return None
    if token is not None and (r.get("claim") or {}).get("token") != token:
        return None
    return r


def heartbeat(state: dict, rid: int, token: str) -> bool:
    """Refresh a claim; False when the round is no longer ours (released as stale)."""
    r = _owned(state, rid, token)
    if r is None:
        return False
    r["claim"]["heartbeat"] = time.time()
    return True


def release(state: dict, rid: int, token: str | None, note: str) -> bool:
    """Give a running round back (interrupted, not failed): pending again, attempt not
    counted."""
    r = _owned(state, rid, token)
    if r is None:
        return False
    r["status"], r["claim"] = "pending", None
    r["attempts"] = max(0, r["attempts"] - 1)
    r["log"].append(f"{_ts()} released: {note}")
    return True


def record(campaign, state: dict, rid: int, token: str | None, result: dict) -> str:
    """Record the outcome of a round and refit the models.

    result : {"rewards": [..] or None, "raw": {...}, "error": str or None, "exit": int}
    Returns "done", "failed", "retry" (failed, pending again) or "ignored" (the round was
    recorded already or is no longer ours).
    """
    if not 0 <= rid < len(state["rounds"]):
        raise CampaignError(f"no round {rid} in {str(campaign.state_path)!r}")
    r = state["rounds"][rid]
    if r["status"] == "done":
        return "ignored"
    theirs = r["status"] == "running" and token is not None and \
        (r.get("claim") or {}).get("token") != token
    if theirs and result.get("rewards") is None:
        return "ignored"  # our claim was released as stale and another worker re-runs it
    if theirs:
        # A finished result is kept even so (the work is done); the other worker's later
        # record of the same round is then ignored.
        r["log"].append(f"{_ts()} recorded the result of an earlier, released claim")
    r["exit"] = result.get("exit")
    r["raw"] = result.get("raw")
    if result.get("rewards") is not None:
        r["status"], r["rewards"], r["claim"] = "done", [float(v) for v in result["rewards"]], None
        r["finished"] = time.time()
        r["log"].append(f"{_ts()} done: reward {', '.join(f'{v:.3f}' for v in r['rewards'])}")
        update_models(campaign, state)
        return "done"
    r["error"] = result.get("error")
    r["claim"] = None
    if r["attempts"] >= campaign.run.max_attempts:
        r["status"] = "failed"
        r["log"].append(f"{_ts()} failed for good: {r['error']}")
        return "failed"
    r["status"] = "pending"
    r["log"].append(f"{_ts()} failed, will be re-run: {r['error']}")
    return "retry"


def update_models(campaign, state: dict) -> None:
    """Refit the GP hyperparameters (every ``refit_every`` finished rounds) and store them."""
    obs = observations(state)
    stored = state.get("models") or {}
    if len(obs) < 2:
        state["models"] = None
        return
    full = not stored.get("thetas") or \
        len(obs) - stored.get("n_full", 0) >= campaign.settings.refit_every
    models = campaign.bandit().fit(obs, None if full else stored["thetas"])
    state["models"] = {"thetas": [m.theta for m in models], "n": len(obs),
                       "n_full": len(obs) if full else stored.get("n_full", 0),
                       "kernels": [str(m.gp.kernel_) for m in models]}


def counts(state: dict) -> dict:
    out = {s: 0 for s in ("pending", "running", "done", "failed")}
    for r in state["rounds"]:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out

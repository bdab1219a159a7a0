"""Workers: claim a round, train it (a subprocess under mpiexec or srun), record its reward.

``work`` is what ``ddpinn metalic run`` (until the budget is spent) and ``ddpinn metalic work
--rounds K`` (a Slurm array task) do. While a run trains, the worker refreshes its claim's
heartbeat. SIGTERM, SIGINT and SIGUSR1 (Slurm's warning before the time limit) are forwarded
to the run (which checkpoints and exits) and the round goes back to pending: the next worker
re-runs it, resuming from the run's checkpoint (``--resume auto``) if the case writes them. A
worker killed outright (SIGKILL, node failure) leaves a claim that goes stale (dead pid, or no
heartbeat for ``run.lease`` seconds) and is re-run the same way; the training subprocess gets
SIGTERM when its worker dies (Linux parent-death signal).
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ddpinn.io.atomic import atomic_write_text
from ddpinn.metalic import state as st
from ddpinn.metalic.reward import run_result, synthetic_result
from ddpinn.parallel.errors import EXIT_REQUEUE

log = logging.getLogger("ddpinn.metalic")


class Interrupted(Exception):
    """The worker got a signal; the round was handed back."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _parent_death_signal():  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def claim_next(campaign, with_pid: bool = True) -> dict | None:
    """Transaction: claim a round (re-run a pending one, else issue one). A copy, or None."""
    store = st.StateFile(campaign.state_path)
    with store.transaction(create=lambda: st.new_state(campaign)) as state:
        st.check_spec(state, campaign)
        r = st.claim(campaign, state, st.claimant(with_pid))
        return copy.deepcopy(r) if r else None


def record(campaign, rid: int, token: str | None, result: dict) -> str:
    """Transaction: record a round's outcome (and refit the models)."""
    store = st.StateFile(campaign.state_path)
    with store.transaction() as state:
        st.check_spec(state, campaign)
        return st.record(campaign, state, rid, token, result)


def release(campaign, rid: int, token: str | None, note: str) -> bool:
    store = st.StateFile(campaign.state_path)
    with store.transaction() as state:
        return st.release(state, rid, token, note)


def execute(campaign, rnd: dict, launcher=None, ranks=None, signals=None) -> dict:
    """Train one round and return its result (see :func:`ddpinn.metalic.reward.run_result`).

    signals : the worker's ``{"sig": 0, "proc": None}`` (see :func:`work`): the running
        training process is published there so that a signal handler can forward signals.
    Raises :class:`Interrupted` when a signal stopped the run (the caller hands it back).
    """
    if campaign.reward.source == "synthetic":
        return synthetic_result(campaign, rnd)
    signals = signals if signals is not None else {"sig": 0, "proc": None}
    run_dir = Path(rnd["run_dir"])
    _prepare(run_dir, rnd)
    cmd = campaign.command(rnd["context"], rnd["arms"], run_dir, launcher, ranks)
    (run_dir / "command.txt").write_text(shlex.join(cmd) + "\n")
    log_path = run_dir / "metalic.log"
    token = (rnd.get("claim") or {}).get("token")
    with open(log_path, "ab") as out:
        out.write(f"\n== round {rnd['id']} attempt {rnd['attempts']}: {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_parent_death_signal)
        signals["proc"] = proc
        try:
            if signals["sig"]:  # arrived between the claim and the start
                _signal_group(proc, signals["sig"])
            rc = _wait(campaign, proc, rnd["id"], token)
        finally:
            signals["proc"] = None
    tail = _tail(log_path)
    if rc == EXIT_REQUEUE or (signals["sig"] and rc != 0):
        raise Interrupted(signals["sig"] or signal.SIGUSR1)
    if rc is None:
        return {"rewards": None, "exit": None,
                "error": f"timed out after {campaign.run.timeout:g} s (run.timeout)"}
    return run_result(campaign, rnd, rc, tail)


def _signal_group(proc, signum: int) -> None:
    """SIGUSR1 goes to the run as is (ddpinn checkpoints and exits 85); SIGINT/SIGTERM become
    SIGTERM (ddpinn checkpoints too; mpiexec/srun forward it to the ranks)."""
    try:
        os.killpg(proc.pid, signal.SIGUSR1 if signum == signal.SIGUSR1 else signal.SIGTERM)
    except ProcessLookupError:
        pass


def _prepare(run_dir: Path, rnd: dict) -> None:
    """Make the run directory of a round. A directory left by an earlier attempt of this
    very round is kept (its checkpoints resume the run); one of anything else (an older
    campaign in the same place) is emptied, so that --resume auto never picks up a stranger's
    checkpoint."""
    marker = run_dir / "metalic_round.json"
    mine = {"id": rnd["id"], "issued": rnd["issued"], "masks": rnd["masks"],
            "context": rnd["context"]}
    if run_dir.exists():
        try:
            same = json.loads(marker.read_text()) == mine
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(mine))
    for stale in ("errors.json", "solution.nc"):  # never read a result of an earlier attempt
        (run_dir / stale).unlink(missing_ok=True)


def _wait(campaign, proc, rid: int, token: str | None):
    """Wait for the run, refreshing the claim's heartbeat; None after a timeout (killed)."""
    t0 = time.monotonic()
    beat = campaign.run.heartbeat
    store = st.StateFile(campaign.state_path)
    while True:
        try:
            return proc.wait(timeout=beat)
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - t0 > campaign.run.timeout:
            _kill(proc)
            return None
        if token:
            try:
                with store.transaction() as state:
                    ok = st.heartbeat(state, rid, token)
                if not ok:
                    log.warning("round %d: claim released by another worker (stale); finishing "
                                "the run anyway", rid)
                    token = None
            except OSError as exc:  # a flaky shared file system: try again next beat
                log.warning("round %d: heartbeat failed: %s", rid, exc)


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _tail(path: Path, n: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def describe(campaign, rnd: dict) -> str:
    ctx = ", ".join(f"{k}={v:.4g}" for k, v in rnd["context"].items())
    arms = " -> ".join(campaign.arms.label(a) for a in rnd["arms"])
    return f"round {rnd['id']} [{ctx}] {arms} ({rnd['how']}, attempt {rnd['attempts']})"


def work(campaign, rounds: int | None = None, launcher=None, ranks=None, echo=None) -> dict:
    """Claim, train and record rounds until ``rounds`` are done here or nothing is left.

    SIGTERM, SIGINT and SIGUSR1 are forwarded to the training run in progress; the round is
    handed back (or, if the run finished anyway, recorded) and :class:`Interrupted` raised.
    Returns counts of this worker's outcomes.
    """
    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    outcomes = {"done": 0, "failed": 0, "retry": 0, "ignored": 0}
    signals = {"sig": 0, "proc": None}

    def handler(signum, frame):
        signals["sig"] = signum
        if signals["proc"] is not None:
            _signal_group(signals["proc"], signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling
            pass
    try:
        n = 0
        while rounds is None or n < rounds:
            if signals["sig"]:
                raise Interrupted(signals["sig"])
            rnd = claim_next(campaign)
            if rnd is None:
                break
            echo(f"ddpinn metalic: {describe(campaign, rnd)}")
            token = rnd["claim"]["token"]
            try:
                result = execute(campaign, rnd, launcher, ranks, signals)
            except Interrupted as exc:
                release(campaign, rnd["id"], token, f"worker got signal {exc.signum}")
                echo(f"ddpinn metalic: round {rnd['id']} handed back (signal {exc.signum})")
                raise
            except BaseException:
                release(campaign, rnd["id"], token, "worker error")
                raise
            outcome = record(campaign, rnd["id"], token, result)
            outcomes[outcome] += 1
            if result.get("rewards") is not None:
                echo(f"ddpinn metalic: round {rnd['id']} {outcome}: reward "
                     f"{', '.join(f'{v:.3f}' for v in result['rewards'])}")
            else:
                echo(f"ddpinn metalic: round {rnd['id']} {outcome}: {result.get('error')}")
            n += 1
        if signals["sig"]:
            raise Interrupted(signals["sig"])
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
    return outcomes

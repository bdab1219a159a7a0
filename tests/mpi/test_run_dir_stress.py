"""Twenty runs of one short case in one directory, started in random order as fresh runs,
``--resume auto`` or ``--overwrite``, at most two at a time, some stopped by SIGTERM or
SIGKILL: afterwards every metrics step is there once, every checkpoint belongs to the run
beside it, and every file a user put there is still there."""
from __future__ import annotations

import collections
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

from ddpinn.io import checkpoint
from ddpinn.io.metrics import read_metrics

from .test_run_dirs import CASE, start

USER_FILES = {"notes.txt": b"my notes", "checkpoints/best_ckpt_00000005.pt": b"my best",
              "plots/mine.png": b"not a plot of the run", "previous/keep.txt": b"kept"}


def _fate(proc, fate: str, delay: float) -> None:
    time.sleep(delay)
    if proc.poll() is not None:
        return
    if fate == "SIGTERM":
        proc.send_signal(signal.SIGTERM)  # mpiexec forwards it: checkpoint, exit 85
    else:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job, without warning


def _outcome(proc, err: str, fate: str) -> str:
    if proc.returncode == 0:
        return "completed"
    if proc.returncode == 85:
        return "preempted (SIGTERM, checkpoint)"
    if proc.returncode == 2:
        return "refused: in use" if "in use by another" in err else \
            "refused: holds a run" if "holds run" in err or "holds the files" in err else \
            f"refused: {err.strip().splitlines()[-1]}"
    return f"killed ({fate})"


def run_directories(root: Path) -> list:
    """The run directory and the old runs moved into its ``previous/``."""
    prev = root / "previous"
    return [root] + (sorted(p for p in prev.iterdir() if p.is_dir()) if prev.is_dir() else [])


def test_twenty_random_runs_in_one_directory_lose_and_mix_nothing(tmp_path):
    seed = int(os.environ.get("DDPINN_STRESS_SEED", "13"))
    rng = random.Random(seed)
    out = tmp_path / "r"
    for rel, data in USER_FILES.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    live, outcomes = [], collections.Counter()

    def reap(block=False):
        for item in list(live):
            proc, fate = item
            if block or proc.poll() is not None:
                _, err = proc.communicate(timeout=180)
                outcomes[_outcome(proc, err, fate)] += 1
                live.remove(item)

    for i in range(20):
        while len(live) >= 2:
            reap()
            time.sleep(0.1)
        how = rng.choice(["fresh", "auto", "auto", "overwrite"])
        fate = rng.choice(["none", "none", "SIGTERM", "SIGKILL"])
        proc = start(CASE, out, f"stages.0.steps={rng.choice([20, 40, 60])}",
                     "output.keep_checkpoints=2",
                     resume="auto" if how == "auto" else None, overwrite=how == "overwrite")
        outcomes[f"started {how}"] += 1
        if fate != "none":
            threading.Thread(target=_fate, args=(proc, fate, rng.uniform(1.0, 8.0)),
                             daemon=True).start()
        live.append((proc, fate))
        time.sleep(rng.uniform(0.0, 3.0))
    reap(block=True)

    counts = collections.Counter()
    for d in run_directories(out):
        counts["run directories"] += 1
        metrics = d / "metrics.jsonl"
        if metrics.exists():
            steps = [row["step"] for row in read_metrics(metrics)]
            assert steps == list(range(len(steps))), (d, steps)  # each step once, in order
            counts["metrics rows"] += len(steps)
        ckpts = checkpoint.list_checkpoints(d / "checkpoints")
        if ckpts:
            owner = json.loads((d / "run.json").read_text())["run_id"]
            assert all(checkpoint.run_id_of(p) == owner for p in ckpts), d
            counts["checkpoints"] += len(ckpts)
    for rel, data in USER_FILES.items():
        assert (out / rel).read_bytes() == data, rel
    print(f"\nseed {seed}: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    assert outcomes["completed"] >= 1

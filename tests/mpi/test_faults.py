"""Preemption signals, corrupted checkpoints, NaN rollback and lost ranks under mpiexec."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .conftest import HERE, ROOT, check, losses, mpiexec, run_case

CASE = HERE / "cases" / "invariance.toml"
EXIT_REQUEUE = 85


def start_case(n, case, out, *sets, env=None):
    args = [mpiexec(), "-n", str(n), sys.executable, "-m", "ddpinn.cli", "run", str(case),
            "--quiet", "--set", f'output.dir="{out}"', "--set", "output.plots=false"]
    for s in sets:
        args += ["--set", s]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=ROOT)


def wait_for_steps(out: Path, n: int, proc, timeout=120):
    t0 = time.time()
    metrics = out / "metrics.jsonl"
    while time.time() - t0 < timeout:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no {n} steps within {timeout} s")


def rank_pids(mpiexec_pid: int) -> list:
    """Rank processes: children of hydra's proxy, itself a child of mpiexec."""
    def children(pid):
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    return [c for proxy in children(mpiexec_pid) for c in children(proxy)]


def steps(run_dir) -> list:
    return [json.loads(line)["step"] for line in open(Path(run_dir) / "metrics.jsonl")]


def reference(tmp_path):
    out = tmp_path / "uninterrupted"
    check(run_case(2, CASE, out)[0])
    return losses(out)


def assert_same(ref, got, steps_):
    x, y = np.array([ref[s] for s in steps_]), np.array([got[s] for s in steps_])
    assert np.max(np.abs(x - y) / np.abs(x)) <= 1e-10


def test_sigusr1_checkpoints_requeue_exit_and_resume_on_other_rank_count(tmp_path):
    out = tmp_path / "run"
    proc = start_case(4, CASE, out, "output.checkpoint_every=1000")
    wait_for_steps(out, 30, proc)
    proc.send_signal(signal.SIGUSR1)  # mpiexec forwards it to every rank
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_REQUEUE, err
    ckpts = sorted((out / "checkpoints").glob("ckpt_*.pt"))
    assert len(ckpts) == 1
    stopped_at = int(ckpts[0].stem.split("_")[1])
    assert steps(out) == list(range(stopped_at))
    # The requeued job: 2 ranks, --resume auto, same trajectory as an uninterrupted run.
    check(run_case(2, CASE, out, resume="auto")[0])
    assert steps(out) == list(range(200))  # none lost, none repeated
    assert_same(reference(tmp_path), losses(out), range(200))


def test_signal_to_one_rank_stops_all(tmp_path):
    out = tmp_path / "run"
    proc = start_case(4, CASE, out)
    wait_for_steps(out, 10, proc)
    os.kill(rank_pids(proc.pid)[2], signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_REQUEUE, err
    assert list((out / "checkpoints").glob("ckpt_*.pt"))


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path):
    out = tmp_path / "run"
    check(run_case(2, CASE, out, "output.checkpoint_every=40", "output.keep_checkpoints=0")[0])
    newest = out / "checkpoints" / "ckpt_00000200.pt"
    older = out / "checkpoints" / "ckpt_00000160.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(data)
    truncated = out / "checkpoints" / "ckpt_00000240.pt"  # a half-written newer file
    truncated.write_bytes(older.read_bytes()[:1000])
    proc, _ = run_case(2, CASE, out, "output.checkpoint_every=40", resume="auto")
    check(proc)
    # Both the truncated newest file and the corrupted one are skipped, with a warning each.
    assert "ckpt_00000240.pt' is corrupted or truncated" in proc.stderr
    assert "ckpt_00000200.pt' is corrupted or truncated" in proc.stderr
    assert proc.stderr.count("falling back") >= 2
    assert steps(out) == list(range(200))
    assert_same(reference(tmp_path), losses(out), range(160, 200))


def test_nan_on_one_rank_rolls_back_with_lower_learning_rate(tmp_path):
    out = tmp_path / "run"
    case = ROOT / "cases" / "poisson2d.toml"
    sets = ("stages.0.steps=60", "stages.1.steps=0", "points.interior=64",
            "output.checkpoint_every=20", "pde.name=\"tests.mpi.faulty:NaNPoisson\"")
    proc, _ = run_case(4, case, out, *sets, env={"NAN_RANK": "1", "NAN_FROM": "45",
                                                  "NAN_TO": "46"})
    check(proc)
    assert "rolled back to ckpt_00000040.pt with learning rate x0.5" in proc.stderr
    assert steps(out) == list(range(60))


def test_persistent_nan_stops_with_clear_message(tmp_path):
    out = tmp_path / "run"
    case = ROOT / "cases" / "poisson2d.toml"
    sets = ("stages.0.steps=60", "stages.1.steps=0", "points.interior=64",
            "output.checkpoint_every=20", "pde.name=\"tests.mpi.faulty:NaNPoisson\"")
    proc, secs = run_case(2, case, out, *sets, env={"NAN_RANK": "0", "NAN_FROM": "30",
                                                     "NAN_TO": "100000"}, timeout=120)
    assert proc.returncode == 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(lines) == 1 and "still diverging after 3 rollbacks" in lines[0], proc.stderr


def test_sigkill_of_one_rank_ends_job_and_restart_loses_nothing(tmp_path):
    out = tmp_path / "run"
    proc = start_case(4, CASE, out, "output.checkpoint_every=10")
    wait_for_steps(out, 35, proc)
    os.kill(rank_pids(proc.pid)[1], signal.SIGKILL)
    t0 = time.time()
    proc.communicate(timeout=60)
    assert time.time() - t0 < 30
    assert proc.returncode != 0
    before = losses(out)
    last_ckpt = int(sorted((out / "checkpoints").glob("ckpt_*.pt"))[-1].stem.split("_")[1])
    assert last_ckpt >= 30
    check(run_case(4, CASE, out, "output.checkpoint_every=10", resume="auto")[0])
    assert steps(out) == list(range(200))
    after = losses(out)
    # Everything recorded up to the last checkpoint is kept as it was.
    assert all(after[s] == before[s] for s in range(last_ckpt))

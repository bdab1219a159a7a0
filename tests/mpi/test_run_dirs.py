"""Run directories never lose, mix or misattribute a result: each case through the real
``ddpinn run`` under ``mpiexec -n 2``."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ddpinn.io import checkpoint

from .conftest import HERE, ROOT, check, mpiexec, run_case, run_mpi

CASE = HERE / "cases" / "rundir.toml"
EXIT_CONFIG, EXIT_REQUEUE = 2, 85


def errors(proc) -> list:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]


def one_error(proc, *words) -> str:
    """The single 'ddpinn: error:' line of a job that exited with status 2 (no traceback)."""
    lines = errors(proc)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def steps(run_dir) -> list:
    return [json.loads(ln)["step"] for ln in open(Path(run_dir) / "metrics.jsonl")
            if ln.strip()]


def ckpt_steps(run_dir) -> list:
    return [checkpoint.step_of(p) for p in
            checkpoint.list_checkpoints(Path(run_dir) / "checkpoints")]


def run_id(run_dir) -> str:
    return json.loads((Path(run_dir) / "run.json").read_text())["run_id"]


def snapshot(run_dir) -> dict:
    """{relative path: sha256} of every file under ``run_dir`` but the lock file."""
    root = Path(run_dir)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".ddpinn.lock"}


def start(case, out, *sets, resume=None, overwrite=False):
    """A background ``mpiexec -n 2 ddpinn run`` in its own process group."""
    args = [mpiexec(), "-n", "2", sys.executable, "-m", "ddpinn.cli", "run", str(case),
            "--quiet", "--set", f'output.dir="{out}"']
    for s in sets:
        args += ["--set", s]
    args += (["--resume", resume] if resume else []) + (["--overwrite"] if overwrite else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True)


def wait_for_checkpoint(run_dir: Path, step: int, proc, not_of_run=None, timeout=120):
    """Wait until ``run_dir`` holds a checkpoint of ``step`` or later (and not of the run
    ``not_of_run``, whose files may still be there until an overwrite moves them aside).

    Pruning keeps only the newest few, so one file (say step 20) may come and go between two
    polls of a fast run; any later checkpoint shows the run got there.
    """
    t0 = time.time()
    while True:
        try:  # the directory may be moved or files pruned while we look
            if any(checkpoint.step_of(p) >= step
                   and checkpoint.run_id_of(p) not in (None, not_of_run)
                   for p in checkpoint.list_checkpoints(Path(run_dir) / "checkpoints")):
                return
        except OSError:
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f"no checkpoint of step >= {step} within {timeout} s"
        time.sleep(0.1)


# 1 ------------------------------------------------------------------------------------------
def test_fresh_run_in_a_used_directory_is_refused_and_overwrite_keeps_the_old_run(tmp_path):
    out = tmp_path / "r"
    check(run_case(2, CASE, out, "stages.0.steps=50")[0])
    before = snapshot(out)
    proc, _ = run_case(2, CASE, out, "stages.0.steps=20", "stages.0.lr=1e-2")
    one_error(proc, "--resume auto", "--overwrite", str(out))
    assert snapshot(out) == before  # nothing touched
    first = run_id(out)
    # --overwrite: a new run whose checkpoints survive; the old one moved aside, whole.
    proc = start(CASE, out, "stages.0.steps=100000", "stages.0.lr=1e-2", overwrite=True)
    wait_for_checkpoint(out, 20, proc, not_of_run=first)
    proc.send_signal(signal.SIGTERM)  # mpiexec forwards it: checkpoint and exit 85
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_REQUEUE, err
    second = run_id(out)
    assert second != first
    ours = checkpoint.list_checkpoints(out / "checkpoints")
    assert len(ours) == 3 and all(checkpoint.run_id_of(p) == second for p in ours)
    stopped = max(ckpt_steps(out))
    assert stopped > 20 and steps(out) == list(range(stopped))
    (previous,) = (out / "previous").iterdir()
    assert snapshot(previous) == before
    # The requeued job continues the new run, not the old one.
    check(run_case(2, CASE, out, f"stages.0.steps={stopped + 5}", "stages.0.lr=1e-2",
                   resume="auto")[0])
    assert steps(out) == list(range(stopped + 5)) and run_id(out) == second


# 2 ------------------------------------------------------------------------------------------
def test_resume_from_a_checkpoint_of_another_case_is_refused(tmp_path):
    heat = tmp_path / "heat"
    check(run_case(2, CASE, heat, 'pde.name="heat"', "domain.lower=[0.0]",
                   "domain.upper=[1.0]", "domain.time=[0.0, 1.0]", "stages.0.steps=10")[0])
    foreign = heat / "checkpoints" / "ckpt_00000010.pt"
    fresh = tmp_path / "fresh"
    proc, _ = run_case(2, CASE, fresh, resume=foreign)
    one_error(proc, "another problem or model", "pde.name")
    assert not fresh.exists()
    poisson = tmp_path / "poisson"
    check(run_case(2, CASE, poisson, "stages.0.steps=10")[0])
    before = snapshot(poisson)
    proc, _ = run_case(2, CASE, poisson, resume=foreign)
    one_error(proc, "another problem or model")
    assert snapshot(poisson) == before


# 3 ------------------------------------------------------------------------------------------
def test_one_run_per_directory_and_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "r"
    first = start(CASE, out, "stages.0.steps=100000")
    wait_for_checkpoint(out, 10, first)
    for resume in ("auto", None):
        proc, secs = run_case(2, CASE, out, resume=resume, timeout=60)
        one_error(proc, "in use by another ddpinn run", "pid")
    assert first.poll() is None  # the first run goes on
    os.killpg(first.pid, signal.SIGKILL)  # a killed job (node failure, scancel -s KILL)
    first.communicate(timeout=60)
    time.sleep(0.5)  # the ranks are gone with their process group
    n = max(ckpt_steps(out))
    proc, _ = run_case(2, CASE, out, f"stages.0.steps={n + 10}", resume="auto")
    check(proc)  # the lock went with the killed job
    assert steps(out) == list(range(n + 10))


# 4 ------------------------------------------------------------------------------------------
def test_pruning_removes_only_the_runs_own_checkpoints(tmp_path):
    out = tmp_path / "r"
    ckpts = out / "checkpoints"
    ckpts.mkdir(parents=True)
    user = {"best_ckpt_00000005.pt": b"mine", "ckpt_5.pt": b"also mine",
            "ckpt_00000001.pt.bak": b"a backup"}
    for name, data in user.items():
        (ckpts / name).write_bytes(data)
    check(run_case(2, CASE, out, "output.keep_checkpoints=1")[0])
    for name, data in user.items():
        assert (ckpts / name).read_bytes() == data
    assert ckpt_steps(out) == [30]


# 5 ------------------------------------------------------------------------------------------
def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
    out = tmp_path / "r"
    check(run_case(2, CASE, out, "stages.0.steps=20")[0])
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 20, "stage": 0, "lo')  # a job killed mid-write
    proc, _ = run_case(2, CASE, out, resume="auto", quiet=False)
    check(proc)
    assert "metrics.jsonl: dropped 1 unreadable line(s) (line 21)" in proc.stderr
    assert steps(out) == list(range(30))


# 6 ------------------------------------------------------------------------------------------
def _rewrite(path: Path, edit) -> None:
    """Write checkpoint ``path`` again after ``edit(state)``, with a valid header."""
    state = checkpoint.load(path)
    edit(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    path.write_bytes(checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
                     + payload)


def test_bad_resume_and_output_dir_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "r"
    check(run_case(2, CASE, out, "stages.0.steps=10")[0])
    before = snapshot(out)
    # a checkpoint of another grid (also another identity): config.toml stays as it was
    proc, _ = run_case(2, CASE, out, "decomposition.grid=[4, 1]", resume="auto")
    one_error(proc, "decomposition.grid")
    assert snapshot(out) == before
    # an older checkpoint without identity and of another width: one message, no traceback
    other = tmp_path / "legacy"
    (other / "checkpoints").mkdir(parents=True)
    legacy = other / "checkpoints" / "ckpt_00000010.pt"
    legacy.write_bytes((out / "checkpoints" / "ckpt_00000010.pt").read_bytes())

    def forget_identity(state):
        for k in ("identity", "identity_fields", "run_id"):
            state["meta"].pop(k)
    _rewrite(legacy, forget_identity)
    proc, _ = run_case(2, CASE, tmp_path / "wide", "network.width=32", resume=legacy)
    one_error(proc, "does not fit this case's network", "in the model")
    assert not (tmp_path / "wide").exists()
    # a payload without meta
    _rewrite(legacy, lambda state: state.pop("meta"))
    proc, _ = run_case(2, CASE, tmp_path / "nometa", resume=legacy)
    one_error(proc, "lacks meta", "not written by 'ddpinn run'")
    # output.dir under a regular file
    (tmp_path / "file").write_text("x")
    proc, _ = run_case(2, CASE, tmp_path / "file" / "run")
    one_error(proc, "output.dir", "cannot be used")


# 7 ------------------------------------------------------------------------------------------
def test_sys_exit_on_one_rank_ends_the_job(tmp_path):
    proc, secs = run_case(2, CASE, tmp_path / "r", "stages.0.steps=100000",
                          'pde.name="tests.mpi.faulty:ExitingPoisson"', timeout=120,
                          env={"EXIT_RANK": "1", "EXIT_AFTER": "5", "EXIT_CODE": "0"})
    assert proc.returncode != 0
    assert "[rank 1] SystemExit(0) on this rank alone; aborting all 2 ranks" in proc.stderr
    assert secs < 60, secs


# 8 ------------------------------------------------------------------------------------------
def test_a_cut_off_quote_and_an_empty_case_name_are_refused(tmp_path):
    base = ["-m", "ddpinn.cli", "run", str(CASE), "--quiet"]
    proc, _ = run_mpi(2, base + ["--set", 'output.dir="out/x'], cwd=tmp_path)
    one_error(proc, "output.dir", "not a valid TOML value")
    proc, _ = run_mpi(2, base + ["--set", 'case.name=""'], cwd=tmp_path)
    one_error(proc, "case.name", "non-empty")
    assert list(tmp_path.iterdir()) == []  # neither '"out' nor 'runs/' was made

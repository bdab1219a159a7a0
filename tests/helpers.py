"""Helpers for tests that launch real multi-rank jobs with mpiexec (unit, mpi and case
tests import them from here)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MPI_TESTS = ROOT / "tests" / "mpi"


def mpiexec() -> str:
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.skip("mpiexec not found: install an MPI (pip install mpich)")
    return exe


def run_mpi(n: int, args, timeout: float = 300, env=None, cwd=None):
    """Run ``python <args>`` on n ranks; returns (CompletedProcess, seconds)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT),
                "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [mpiexec(), "-n", str(n), sys.executable] + [str(a) for a in args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or ROOT)
    return proc, time.perf_counter() - t0


def run_case(n: int, case, out_dir, *sets, resume=None, timeout=300, env=None, quiet=True):
    """``mpiexec -n n python -m ddpinn.cli run case --set output.dir=... --set ...``."""
    args = ["-m", "ddpinn.cli", "run", str(case), *(["--quiet"] if quiet else []),
            "--set", f'output.dir="{out_dir}"', "--set", "output.plots=false"]
    for s in sets:
        args += ["--set", s]
    if resume:
        args += ["--resume", str(resume)]
    proc, secs = run_mpi(n, args, timeout=timeout, env=env)
    return proc, secs


def metric_rows(run_dir) -> list:
    """The rows of a run's metrics.jsonl, in file order."""
    return [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl") if line.strip()]


def losses(run_dir) -> dict:
    """{step: loss} from a run's metrics.jsonl."""
    return {r["step"]: r["loss"] for r in metric_rows(run_dir)}


def check(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"

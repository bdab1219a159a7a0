"""The workstation launcher and the GPU-binding helper in launch/."""
from __future__ import annotations

import os
import subprocess

from .conftest import ROOT, check, mpiexec

RUN = ROOT / "launch" / "run.sh"
BIND = ROOT / "launch" / "bind_gpu.sh"


def test_launcher_runs_a_case_with_mpiexec(tmp_path):
    mpiexec()  # skip without MPI
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(
        [str(RUN), "-n", "2", "cases/poisson2d.toml", "--quiet", "--set", "stages.0.steps=3",
         "--set", "stages.1.steps=0", "--set", "points.interior=50",
         "--set", "output.plots=false", "--set", f'output.dir="{out}"'],
        capture_output=True, text=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
        timeout=300)
    check(proc)
    assert "[ddpinn launch] mpiexec -n 2" in proc.stderr
    assert (out / "solution.nc").exists()


def test_launcher_picks_srun_inside_an_allocation(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\necho srun \"$@\"\n")
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "SLURM_JOB_ID": "42", "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = subprocess.run([str(RUN), "-n", "4", "--dry-run", "case.toml"], capture_output=True,
                          text=True, env=env)
    check(proc)
    assert "srun --mpi=pmi2 -n 4" in proc.stderr


def test_launcher_rejects_bad_rank_count():
    proc = subprocess.run([str(RUN), "-n", "zero", "case.toml"], capture_output=True, text=True)
    assert proc.returncode == 2 and "positive integer" in proc.stderr


def test_bind_gpu_by_local_rank():
    def bound(env):
        base = {k: v for k, v in os.environ.items()
                if k not in ("SLURM_LOCALID", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK",
                             "PMI_LOCAL_RANK")}
        return subprocess.run([str(BIND), "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
                              capture_output=True, text=True, env={**base, **env})

    assert bound({"CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_LOCALID": "5"}).stdout.strip() == "1"
    assert bound({"CUDA_VISIBLE_DEVICES": "4,6", "MPI_LOCALRANKID": "0"}).stdout.strip() == "4"
    assert bound({"CUDA_VISIBLE_DEVICES": "4,6",
                  "OMPI_COMM_WORLD_LOCAL_RANK": "3"}).stdout.strip() == "6"
    no_rank = bound({"CUDA_VISIBLE_DEVICES": "0"})
    assert no_rank.returncode == 2 and "node-local rank" in no_rank.stderr

"""Real Slurm: a private single-node cluster (slurm_cluster.py) running the sbatch templates.

Needs ``bash .ci/install_slurm.sh`` and root; skipped with a message otherwise.

* the cluster runs ``sbatch --wrap hostname``;
* ``srun --mpi=pmi2`` gives the MPICH wheel one 2-rank world (without it: two 1-rank worlds,
  which ddpinn refuses with a clear message);
* ``slurm/cpu.sbatch`` trains a tiny Poisson case to ``solution.nc``;
* ``slurm/array.sbatch`` runs a 3-line sweep into 3 run directories;
* SIGUSR1 to the batch shell (what ``--signal=B:USR1@60`` does) makes ddpinn checkpoint and
  exit 85, the template requeues the job, and the requeued job removes stale MPICH
  shared-memory segments of its job id, resumes and finishes.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, missing_requirements  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = ROOT / "slurm"

pytestmark = pytest.mark.skipif(missing_requirements() is not None,
                                reason=str(missing_requirements()))

# A few steps of the Poisson case, small enough for a loaded 2-core machine.
TINY = ["--set", "stages.0.steps=20", "--set", "stages.1.steps=0",
        "--set", "points.interior=50", "--set", "points.boundary=16",
        "--set", "points.interface=8", "--set", "output.plots=false",
        "--set", "output.eval_every=0", "--set", "output.checkpoint_every=0",
        "--set", "output.grid=[21, 21]", "--set", "output.log_every=5"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


@pytest.fixture
def job_env():
    """Environment of the submitted jobs: this interpreter, one thread per rank."""
    return {"DDPINN_PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")]))}


def fnv1a(text: str) -> str:
    """MPICH's world id: 32-bit FNV-1a of the PMI job id ("<job>.<step>" under pmi2)."""
    h = 2166136261
    for byte in text.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return f"{h:x}"


def _wait_ok(cluster, job, out: Path, timeout: float) -> None:
    state = cluster.wait(job, timeout=timeout)
    log = out.read_text() if out.exists() else "(no output file)"
    assert state == "COMPLETED", f"job {job} ended {state}:\n{log}\n{cluster.logs()}"


def test_sbatch_wrap_hostname(cluster, tmp_path):
    out = tmp_path / "hostname.out"
    job = cluster.sbatch(["--wrap", "hostname", "-o", out])
    _wait_ok(cluster, job, out, timeout=120)
    assert out.read_text().strip() == cluster.hostname
    assert cluster.job_info(job)["ExitCode"] == "0:0"


MPI_SIZE = "from mpi4py import MPI; print('size', MPI.COMM_WORLD.Get_size(), flush=True)"


@pytest.mark.parametrize("mpi, expected", [("pmi2", "2"), ("none", "1")])
def test_srun_mpi_plugin_with_mpich_wheel(cluster, tmp_path, mpi, expected):
    """--mpi=pmi2: the MPICH wheel's ranks form one world of 2 (PMI_FD/PMI_RANK/PMI_SIZE from
    Slurm's mpi/pmi2 plugin). --mpi=none: each task initialises MPI alone (singleton)."""
    out = tmp_path / "size.out"
    script = tmp_path / "size.sh"
    script.write_text(f"#!/bin/bash\nsrun --mpi={mpi} -n 2 {sys.executable} -c \"{MPI_SIZE}\"\n")
    job = cluster.sbatch(["-n", "2", "-o", out, script])
    _wait_ok(cluster, job, out, timeout=180)
    sizes = [line.split()[1] for line in out.read_text().splitlines() if line.startswith("size")]
    assert sizes == [expected, expected], out.read_text()


def test_wrong_mpi_plugin_fails_fast(cluster, tmp_path, job_env):
    """srun without a matching --mpi: ddpinn sees 2 tasks but a world of 1 and stops (2)."""
    out = tmp_path / "wrong.out"
    script = tmp_path / "wrong.sh"
    script.write_text(
        f"#!/bin/bash\nsrun --mpi=none {sys.executable} -m ddpinn.cli run "
        f"{ROOT / 'cases' / 'poisson2d.toml'} --set 'output.dir=\"{tmp_path / 'run'}\"'\n")
    job = cluster.sbatch(["-n", "2", "-o", out, script], env=job_env, cwd=tmp_path)
    state = cluster.wait(job, timeout=180)
    text = out.read_text()
    assert state == "FAILED", text
    assert "srun's MPI plugin does not match" in text
    assert text.count("ddpinn: error") == 1, text  # printed once, by task 0
    assert not (tmp_path / "run").exists()


def test_cpu_template(cluster, tmp_path, job_env):
    run = tmp_path / "run"
    out = tmp_path / "job.out"
    job = cluster.sbatch(["--ntasks=2", "--time=10:00", "-o", out,
                          SLURM_DIR / "cpu.sbatch", ROOT / "cases" / "poisson2d.toml",
                          *TINY, "--set", f'output.dir="{run}"'],
                         env=job_env, cwd=tmp_path)
    _wait_ok(cluster, job, out, timeout=400)
    assert (run / "solution.nc").is_file(), out.read_text()
    cfg = (run / "config.toml").read_text()
    assert "steps = 20" in cfg


def test_array_template(cluster, tmp_path, job_env):
    sweep = tmp_path / "sweep.txt"
    sweep.write_text("# k of the manufactured solution, one task per line\n"
                     "pde.params.k=1.0\n\n"
                     "--set pde.params.k=2.0\n"
                     "pde.params.k=3.0 stages.0.lr=1e-3\n")
    out = tmp_path / "job_%a.out"
    job = cluster.sbatch(["--array=0-2", "--ntasks=2", "--time=10:00", "-o", out,
                          SLURM_DIR / "array.sbatch", sweep,
                          ROOT / "cases" / "poisson2d.toml", *TINY],
                         env=job_env, cwd=tmp_path)
    state = cluster.wait(job, timeout=600)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("job_*.out")))
    assert state == "COMPLETED", f"{state}\n{logs}"
    for task, k in enumerate(["1.0", "2.0", "3.0"]):
        run = tmp_path / "runs" / "poisson2d" / f"task_{task}"
        assert (run / "solution.nc").is_file(), logs
        assert f"k = {k}" in (run / "config.toml").read_text()
    assert "lr = 0.001" in (tmp_path / "runs/poisson2d/task_2/config.toml").read_text()


def test_usr1_checkpoint_requeue_resume(cluster, tmp_path, job_env):
    """What --signal=B:USR1@60 does at the time limit, sent by hand: the batch shell forwards
    USR1 to srun, ddpinn checkpoints and exits 85, the job is requeued (same id) and the
    second run resumes from the checkpoint and completes."""
    run = tmp_path / "run"
    out = tmp_path / "job.out"
    sets = [*TINY, "--set", "stages.0.steps=400", "--set", f'output.dir="{run}"']
    job = cluster.sbatch(["--ntasks=2", "--time=20:00", "-o", out, "--open-mode=append",
                          SLURM_DIR / "cpu.sbatch", ROOT / "cases" / "poisson2d.toml", *sets],
                         env=job_env, cwd=tmp_path)
    # Wait until training runs (ddpinn's handlers are installed), then signal the batch shell.
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().strip()):
        assert cluster.states(job).get(job) in ("PENDING", "RUNNING", "CONFIGURING"), \
            out.read_text() if out.exists() else "no output"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    cluster.scancel("--batch", "--signal=USR1", job)
    # Wait for the requeue (the first run checkpoints and exits 85 first), then skip Slurm's
    # two-minute hold of requeued jobs once the old run's step daemons are gone.
    deadline = time.monotonic() + 300
    while True:
        info = cluster.job_info(job)
        if info.get("Restarts") == "1":
            break
        assert info.get("JobState") in ("RUNNING", "COMPLETING"), \
            f"{info.get('JobState')}\n{out.read_text()}"
        assert time.monotonic() < deadline, f"not requeued:\n{out.read_text()}"
        time.sleep(0.5)
    # A stale MPICH segment with this job id, as a run killed by SIGKILL leaves behind: the
    # template must remove it on restart, or MPI_Init of the resumed run hangs or fails.
    stale = [Path("/dev/shm") / f"mpich_shm_{fnv1a(f'{job}.{step}')}_0" for step in (0, 1)]
    try:
        for path in stale:
            path.write_bytes(bytes(1 << 20))
        cluster.release_requeued(job)
        state = cluster.wait(job, timeout=600)
    finally:
        leftover = [p for p in stale if p.exists()]
        for path in leftover:
            path.unlink()
    assert not leftover, f"stale segments not removed on restart: {leftover}"
    text = out.read_text()
    assert state == "COMPLETED", text
    assert "requeued" in text and "resumed from" in text, text
    assert cluster.job_info(job).get("Restarts") == "1", cluster.job_info(job)
    assert (run / "solution.nc").is_file()
    ckpts = list((run / "checkpoints").glob("*"))
    assert ckpts, "no checkpoint written on SIGUSR1"
    steps = [json.loads(line).get("step") for line in metrics.read_text().splitlines()
             if line.strip()]
    assert steps == list(range(400)), steps[-5:]  # none lost, none repeated


def test_scancel_is_not_undone_by_requeue(cluster, tmp_path, job_env):
    """scancel: SIGTERM reaches ddpinn (which may checkpoint and exit 85), but the template
    must not requeue the job (Slurm would accept a requeue of a job being cancelled)."""
    run = tmp_path / "run"
    out = tmp_path / "job.out"
    sets = [*TINY, "--set", "stages.0.steps=100000", "--set", f'output.dir="{run}"']
    job = cluster.sbatch(["--ntasks=2", "--time=20:00", "-o", out,
                          SLURM_DIR / "cpu.sbatch", ROOT / "cases" / "poisson2d.toml", *sets],
                         env=job_env, cwd=tmp_path)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().strip()):
        assert cluster.states(job).get(job) in ("PENDING", "RUNNING", "CONFIGURING"), \
            out.read_text() if out.exists() else "no output"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    cluster.scancel(job)
    state = cluster.wait(job, timeout=120)
    time.sleep(2)  # a wrongly requeued job would show up as PENDING again by now
    info = cluster.job_info(job)
    text = out.read_text()
    assert state == "CANCELLED" and info.get("JobState") == "CANCELLED", f"{info}\n{text}"
    assert info.get("Restarts") == "0", text
    assert "requeued" not in text, text


def test_scontrol_requeue_mid_run_loses_and_repeats_no_step(cluster, tmp_path, job_env):
    """`scontrol requeue` of a running job: Slurm stops it (SIGTERM: ddpinn checkpoints),
    starts it again with the same id, the template passes --resume auto, and the metrics
    file ends with every step exactly once."""
    run = tmp_path / "run"
    out = tmp_path / "job.out"
    steps_total = 400
    sets = [*TINY, "--set", f"stages.0.steps={steps_total}", "--set",
            "output.checkpoint_every=25", "--set", f'output.dir="{run}"']
    job = cluster.sbatch(["--ntasks=2", "--time=20:00", "-o", out, "--open-mode=append",
                          SLURM_DIR / "cpu.sbatch", ROOT / "cases" / "poisson2d.toml", *sets],
                         env=job_env, cwd=tmp_path)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 60):
        assert cluster.states(job).get(job) in ("PENDING", "RUNNING", "CONFIGURING"), \
            out.read_text() if out.exists() else "no output"
        assert time.monotonic() < deadline, "training did not get going"
        time.sleep(0.5)
    cluster.scontrol("requeue", job)
    deadline = time.monotonic() + 300
    while cluster.job_info(job).get("Restarts") != "1":
        assert time.monotonic() < deadline, f"not requeued:\n{out.read_text()}"
        time.sleep(0.5)
    cluster.release_requeued(job)
    state = cluster.wait(job, timeout=600)
    text = out.read_text()
    assert state == "COMPLETED", text
    assert "resumed from" in text, text
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()
             if line.strip()]
    assert steps == list(range(steps_total)), (len(steps), steps[:5], steps[-5:])
    assert (run / "solution.nc").is_file()

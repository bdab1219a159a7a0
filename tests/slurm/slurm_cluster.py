"""A private single-node Slurm cluster for tests and CI.

``SlurmCluster(workdir)`` starts its own ``munged`` (own key, socket, pid and log files),
``slurmctld`` and ``slurmd`` from its own ``slurm.conf`` (free ports picked at run time, a
unique cluster name, all state under ``workdir``), and waits until the node is idle. It never
reads or touches a system-wide Slurm or MUNGE: clients find the cluster through
``SLURM_CONF`` in :attr:`SlurmCluster.env`, and the daemons authenticate through the private
MUNGE socket named in ``AuthInfo``. :meth:`SlurmCluster.stop` cancels the cluster's jobs and
ends only the three daemons it started (by their ``Popen`` objects, never by name).

Requirements: ``.ci/install_slurm.sh`` (Debian ``slurm-wlm``, ``slurm-wlm-basic-plugins``,
``munge``) and root (``slurmd`` must be root to launch job steps). Otherwise the tests using
it are skipped with a message (:func:`skip_unless_available`).

Example::

    with SlurmCluster(tmp_path) as cluster:
        job = cluster.sbatch(["--wrap", "hostname", "-o", str(tmp_path / "out")])
        assert cluster.wait(job, timeout=60) == "COMPLETED"

Notes on the configuration (see ``_slurm_conf``):

* the node declares ``cpus`` CPUs (default ``max(os.cpu_count(), 8)``) with
  ``SlurmdParameters=config_overrides``, so a 4-rank job or three 2-rank array tasks run on a
  2-core machine (oversubscribed) without ``--overcommit``; without ``config_overrides`` a
  node declaring more CPUs than it has is drained ("Low CPUs");
* ``SelectType=select/cons_tres`` with ``CR_Core`` (memory not consumable, so no ``--mem``
  is needed), ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none`` (no cgroups
  needed, works in containers), no accounting (so no ``sacct``: :meth:`wait` polls
  ``scontrol show job`` and remembers the states it saw);
* ``MpiDefault=none``: jobs say ``srun --mpi=pmi2`` (what the MPICH wheel speaks);
* ``FirstJobId`` random: job ids never repeat between test clusters. MPICH names its shared
  memory ``/dev/shm/mpich_shm_<FNV-1a("<job>.<step>")>_<node>``, and a segment left behind
  by a killed step makes ``MPI_Init`` of a later step with the same ids fail or hang;
* MUNGE: ``munged -F --force`` as root, key and socket private (see ``_start_munged``).

Slurm holds a requeued job for about two minutes; :meth:`SlurmCluster.release_requeued`
starts it as soon as the old run's step daemons are gone (releasing it earlier breaks
``--mpi=pmi2``, see there).
"""
from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

#: Slurm job states after which a job does not run again by itself.
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
    "OUT_OF_MEMORY", "PREEMPTED", "SPECIAL_EXIT", "REVOKED",
})

_DAEMONS = ("munged", "slurmctld", "slurmd")
_CLIENTS = ("sbatch", "srun", "scontrol", "squeue", "sinfo", "scancel")


def missing_requirements() -> str | None:
    """Why a private cluster cannot start here (a message), or None when it can."""
    missing = [exe for exe in _DAEMONS + _CLIENTS if shutil.which(exe) is None
               and not Path("/usr/sbin", exe).exists()]
    if missing:
        return (f"Slurm/MUNGE not installed (missing: {', '.join(missing)}); "
                f"run: bash .ci/install_slurm.sh")
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (slurmd launches job steps)"
    return None


def skip_unless_available() -> None:
    """``pytest.skip`` with a clear message when :func:`missing_requirements` says so."""
    import pytest

    why = missing_requirements()
    if why:
        pytest.skip(why)


def _exe(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    sbin = Path("/usr/sbin", name)  # daemons live in sbin, not always on a user's PATH
    if sbin.exists():
        return str(sbin)
    raise FileNotFoundError(name)


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports that were free a moment ago (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _memory_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


def parse_scontrol_records(text: str) -> list[dict]:
    """Records of ``scontrol -o show ...`` (one per line) as dicts of ``Key: value``.

    Values may contain spaces (``Command=``, ``Reason=``): a new key starts only at a word
    that looks like ``Key=`` with a Slurm-style key (letters, digits, ``/:_``).
    """
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        rec: dict[str, str] = {}
        for m in re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9/:_]*)=(.*?)(?=\s[A-Za-z][A-Za-z0-9/:_]*=|$)",
                             line):
            rec.setdefault(m.group(1), m.group(2))
        records.append(rec)
    return records


class SlurmError(RuntimeError):
    """The private cluster failed to start, or a Slurm command failed."""


class SlurmCluster:
    """A private single-node Slurm cluster (context manager).

    Parameters
    ----------
    workdir : path
        Holds ``slurm.conf``, state, spool, logs and the MUNGE key; created if needed.
    cpus : int, optional
        CPUs the node declares (default ``max(os.cpu_count(), 8)``; more than the real count
        oversubscribes the cores, see the module docstring).
    oversubscribe : str
        The partition's ``OverSubscribe`` (``NO``, ``YES``, ``FORCE:4``, ...).
    min_job_age : int
        Seconds a finished job stays visible to ``scontrol show job``.
    kill_wait : int
        Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.
    start_timeout : float
        Seconds to wait for the node to become idle.
    """

    partition = "debug"

    def __init__(self, workdir, cpus: int | None = None, oversubscribe: str = "NO",
                 min_job_age: int = 120, kill_wait: int = 10, start_timeout: float = 90.0):
        self.workdir = Path(workdir).resolve()
        self.cpus = int(cpus or max(os.cpu_count() or 1, 8))
        self.oversubscribe = oversubscribe
        self.min_job_age = int(min_job_age)
        self.kill_wait = int(kill_wait)
        self.start_timeout = float(start_timeout)
        self.hostname = socket.gethostname().split(".")[0]
        self.cluster_name = "ddp" + uuid.uuid4().hex[:8]
        # Job ids must not repeat between clusters: MPICH names its shared-memory segment
        # /dev/shm/mpich_shm_<FNV-1a hash of "<job id>.<step id>">_<node>, and a segment
        # left behind by a killed step breaks MPI_Init of the next step with the same ids.
        self.first_job_id = 1000 + secrets.randbelow(50_000_000)
        self.conf_path = self.workdir / "slurm.conf"
        self.log_dir = self.workdir / "log"
        self.munge_dir: Path | None = None
        self.munge_socket: Path | None = None
        self.ctld_port = self.slurmd_port = 0
        self.env: dict[str, str] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._seen: dict[str, str] = {}  # job id -> last state seen by wait()/states()

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "SlurmCluster":
        why = missing_requirements()
        if why:
            raise SlurmError(why)
        atexit.register(self.stop)  # also on an interpreter exit outside the with-block
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self._start_munged()
        self.ctld_port, self.slurmd_port = _free_ports(2)
        self.conf_path.write_text(self._slurm_conf())
        self.env = {**os.environ, "SLURM_CONF": str(self.conf_path)}
        # Never let a caller's Slurm environment (e.g. tests run inside a job) leak in.
        for key in list(self.env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_")) \
                    and key != "SLURM_CONF":
                del self.env[key]
        self.env["SLURM_CONF"] = str(self.conf_path)

        self._spawn("slurmctld", [_exe("slurmctld"), "-D", "-f", str(self.conf_path)])
        self._wait_for(self._ctld_up, "slurmctld to answer 'scontrol ping'")
        self._spawn("slurmd", [_exe("slurmd"), "-D", "-f", str(self.conf_path),
                               "-N", self.hostname])
        self._wait_for(self._node_idle, f"node {self.hostname} to become idle")

    def _start_munged(self) -> None:
        # The socket lives in a short private directory under /tmp: AF_UNIX paths are limited
        # to 108 bytes (pytest's tmp paths are long), and munged insists that every directory
        # above its socket is world-executable, which /tmp/pytest-of-root (0700) is not.
        self.munge_dir = Path(tempfile.mkdtemp(prefix="munge-", dir="/tmp"))
        os.chmod(self.munge_dir, 0o755)
        self.munge_socket = self.munge_dir / "munge.socket"
        key = self.workdir / "munge.key"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(1024))
        os.chmod(key, 0o600)
        # Runs as root in the foreground (-F: the Popen pid is the daemon's pid). --force
        # turns munged's path-permission checks (group-writable parents of the key, ...)
        # into warnings; the key is 0600 and only root talks to this socket.
        self._spawn("munged", [
            _exe("munged"), "-F", "--force", f"--socket={self.munge_socket}",
            f"--key-file={key}", f"--pid-file={self.munge_dir / 'munged.pid'}",
            f"--seed-file={self.munge_dir / 'munged.seed'}",
            f"--log-file={self.log_dir / 'munged.log'}", "--num-threads=2"])
        self._wait_for(self._munge_ok, "munged to answer on its socket")

    def stop(self) -> None:
        """Cancel this cluster's jobs, then end the daemons it started (and nothing else)."""
        if self._procs.get("slurmctld") is not None and self._procs["slurmctld"].poll() is None:
            try:
                ids = self._run(["squeue", "-h", "-o", "%A"], timeout=15).stdout.split()
                if ids:
                    self._run(["scancel", *ids], timeout=15, check=False)
                    deadline = time.monotonic() + self.kill_wait + 20
                    while time.monotonic() < deadline:
                        out = self._run(["squeue", "-h", "-o", "%A"], timeout=15,
                                        check=False).stdout.split()
                        if not out:
                            break
                        time.sleep(0.5)
            except (subprocess.SubprocessError, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
            log = getattr(proc, "_ddpinn_log", None)
            if log is not None:
                log.close()
        if self.munge_dir is not None:
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            self.munge_dir = None
        atexit.unregister(self.stop)

    # ------------------------------------------------------------------ configuration
    def _slurm_conf(self) -> str:
        w, h = self.workdir, self.hostname
        mem = max(256, int(_memory_mb() * 0.9))
        lines = [
            f"ClusterName={self.cluster_name}",
            f"FirstJobId={self.first_job_id}",
            f"SlurmctldHost={h}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={w / 'state'}",
            f"SlurmdSpoolDir={w / 'spool'}",
            f"SlurmctldPidFile={w / 'slurmctld.pid'}",
            f"SlurmdPidFile={w / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "MpiDefault=none",
            "ReturnToService=2",
            "JobRequeue=1",
            f"KillWait={self.kill_wait}",
            f"MinJobAge={self.min_job_age}",
            "InactiveLimit=0",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MailProg=/bin/true",
            f"NodeName={h} NodeAddr=127.0.0.1 CPUs={self.cpus} Boards=1 SocketsPerBoard=1 "
            f"CoresPerSocket={self.cpus} ThreadsPerCore=1 RealMemory={mem} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={h} Default=YES MaxTime=INFINITE State=UP "
            f"OverSubscribe={self.oversubscribe}",
        ]
        return "# private test cluster written by tests/slurm/slurm_cluster.py\n" + \
            "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ helpers
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.log_dir / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.workdir,
                                env=self.env or {**os.environ, "SLURM_CONF": str(self.conf_path)},
                                start_new_session=True)
        proc._ddpinn_log = log  # closed in stop()
        self._procs[name] = proc

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmError(f"{name} exited with status {proc.returncode} while "
                                     f"waiting for {what}\n{self.logs()}")
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.3)
        raise SlurmError(f"timed out after {self.start_timeout:.0f} s waiting for {what}\n"
                         f"{self.logs()}")

    def _munge_ok(self) -> bool:
        if not self.munge_socket.exists():
            return False
        cred = subprocess.run([_exe("munge"), "-n", "-S", str(self.munge_socket)],
                              capture_output=True, timeout=10)
        if cred.returncode:
            return False
        back = subprocess.run([_exe("unmunge"), "-S", str(self.munge_socket)],
                              input=cred.stdout, capture_output=True, timeout=10)
        return back.returncode == 0

    def _ctld_up(self) -> bool:
        out = self._run(["scontrol", "ping"], timeout=10, check=False).stdout
        return "is UP" in out

    def _node_idle(self) -> bool:
        out = self._run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10, check=False).stdout
        return out.strip().rstrip("*") == "idle"

    def _run(self, cmd: list[str], timeout: float = 60, check: bool = True,
             **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run([_exe(cmd[0]), *cmd[1:]], capture_output=True, text=True,
                              env=self.env or {**os.environ, "SLURM_CONF": str(self.conf_path)},
                              timeout=timeout, **kw)
        if check and proc.returncode:
            raise SlurmError(f"{' '.join(cmd)} failed with status {proc.returncode}:\n"
                             f"{proc.stdout}{proc.stderr}")
        return proc

    def logs(self, tail: int = 30) -> str:
        """The last lines of the daemons' logs (for error messages)."""
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            try:
                lines = path.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                continue
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # ------------------------------------------------------------------ client API
    def sbatch(self, args, cwd=None, env=None) -> str:
        """Submit ``sbatch --parsable ARGS``; returns the job id (a string, e.g. ``"12"``)."""
        full_env = {**self.env, **(env or {})}
        proc = subprocess.run([_exe("sbatch"), "--parsable", *[str(a) for a in args]],
                              capture_output=True, text=True, env=full_env, cwd=cwd,
                              timeout=60)
        if proc.returncode:
            raise SlurmError(f"sbatch {' '.join(map(str, args))} failed "
                             f"({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc.stdout.strip().split(";")[0]

    def scontrol(self, *args, check: bool = True) -> str:
        """``scontrol ARGS`` on this cluster; returns stdout."""
        return self._run(["scontrol", *map(str, args)], check=check).stdout

    def scancel(self, *args) -> None:
        self._run(["scancel", *map(str, args)])

    def job_records(self, job_id) -> list[dict]:
        """``scontrol -o show job JOB`` as dicts (one per array task); [] once purged."""
        proc = self._run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        if proc.returncode:
            return []  # "Invalid job id specified": unknown or purged (MinJobAge)
        return parse_scontrol_records(proc.stdout)

    def states(self, job_id) -> dict[str, str]:
        """{job or array-task id: state}, e.g. ``{"7_0": "COMPLETED", "7_[1-2]": "PENDING"}``.

        Array tasks that have not started yet appear as one ranged entry (``7_[1-2]``).
        States last seen are remembered, so a job purged after MinJobAge keeps its final
        state here.
        """
        pending_ranges = {}
        for rec in self.job_records(job_id):
            tid = rec.get("ArrayTaskId")
            if tid and not tid.isdigit():  # "1-2", "3,5", "1-9%2": tasks not started yet
                pending_ranges[f"{rec.get('ArrayJobId')}_[{tid}]"] = rec.get("JobState", "")
                continue
            key = f"{rec.get('ArrayJobId')}_{tid}" if tid else rec.get("JobId", str(job_id))
            self._seen[key] = rec.get("JobState", "UNKNOWN")
        prefix = f"{job_id}_"
        seen = {k: v for k, v in self._seen.items() if k == str(job_id) or k.startswith(prefix)}
        return {**seen, **pending_ranges}

    def job_info(self, job_id) -> dict:
        """The ``scontrol show job`` record of a (non-array) job, {} when gone."""
        recs = self.job_records(job_id)
        return recs[0] if recs else {}

    def release_requeued(self, job_id, timeout: float = 120) -> None:
        """Let a requeued job start now instead of after Slurm's ~2 minute hold.

        Slurm keeps a requeued job pending (``Reason=BeginTime``) so that the previous run's
        ``slurmstepd`` processes finish first: they share the job id, and an old step daemon
        that exits late removes the new step's sockets in the spool directory (with
        ``--mpi=pmi2``: ``srun: error: mpi/pmi2: failed to send temp kvs to compute nodes``
        and a hung step). So this waits until the job is pending again *and* the spool
        directory holds nothing of the job (``<host>_<job>.<step>``, ``sock.pmi2.<job>.*``,
        ``job<job>``), then sets ``StartTime=now``.
        """
        spool = self.workdir / "spool"
        jid = int(str(job_id).split("_")[0])
        names = (f"{self.hostname}_{jid}.", f"sock.pmi2.{jid}.", f"job{jid:05d}")
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_info(job_id).get("JobState")
            busy = [p.name for p in spool.iterdir() if p.name.startswith(names)]
            if state == "PENDING" and not busy:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id}: state {state}, spool still has {busy}")
            time.sleep(0.5)
        time.sleep(2)  # the old step daemons exit right after removing their files
        self.scontrol("update", f"JobId={job_id}", "StartTime=now")

    def wait(self, job_id, timeout: float = 300, poll: float = 0.5) -> str:
        """Wait until the job (all tasks of an array) reached a terminal state.

        Returns that state (``COMPLETED``, ``FAILED``, ...); for an array whose tasks ended
        differently, ``"7_0:COMPLETED,7_1:FAILED,..."``. A requeued job (state REQUEUED,
        then PENDING) is waited for until it ends for good. Raises ``TimeoutError``.
        """
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(job_id)
            if states and all(s in TERMINAL_STATES for s in states.values()):
                final = set(states.values())
                if len(final) == 1:
                    return final.pop()
                return ",".join(f"{k}:{v}" for k, v in sorted(states.items()))
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout} s: {states}\n"
                                   f"{self._run(['squeue'], check=False).stdout}")
            time.sleep(poll)

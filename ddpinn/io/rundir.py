"""Run directories: what run a directory holds, who may write it, and what a re-run does.

A run directory holds one run. ``run.json`` names it: a random *run id*, made when the run
starts fresh, and its *identity*, a fingerprint of everything that defines the problem and the
model (PDE and parameters, domain, decomposition, network, seed; not step counts, points or
output settings). Every checkpoint carries both (the run id also in its header line, so it is
read without loading the file). From them follow the rules of a re-run:

* a fresh run (no ``--resume``) in a directory that holds a run is refused, naming
  ``--resume auto`` and ``--overwrite``; ``--overwrite`` moves the old run's files, by exact
  name, into ``previous/<time>-<run id>/`` and starts a new run (nothing is deleted);
* ``--resume auto`` continues the directory's run from its newest readable checkpoint *of
  that run*, or restarts it when it has none; a directory of another identity is refused,
  naming what differs;
* ``--resume PATH`` takes a checkpoint of the same identity only;
* pruning removes only this run's own checkpoints, by exact name;
* one run at a time: rank 0 holds an advisory lock (``flock``) on ``.ddpinn.lock`` for the
  life of the job; the kernel releases it when the job dies, so a killed job never leaves the
  directory stuck and a requeued job takes it over.

Everything here is decided by rank 0 before anything is written; the caller agrees on errors
over all ranks.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ddpinn.io import checkpoint

log = logging.getLogger("ddpinn")

RUN_FILE = "run.json"
LOCK_FILE = ".ddpinn.lock"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
PREVIOUS_DIR = "previous"
# Files a run writes at its top level; --overwrite moves exactly these (and its checkpoints
# and plots) aside, a user's own files stay where they are.
RUN_FILES = (RUN_FILE, "config.toml", "decomposition.json", METRICS_FILE, "errors.json",
             "solution.nc", "diagnostics.nc", "reference.nc", "solution_at_reference.nc",
             "probes.nc", "solution.vti", "solution.vtr", "solution.pvd")
VTK_FILES = re.compile(r"solution_\d{4,}\.(vti|vtr)")  # vtk/ of output.vtk (ddpinn.io.vtk)
EVAL_FILES = re.compile(r"eval_[\w.-]+\.(csv|nc)")  # ddpinn eval's default names
PLOT_FILES = re.compile(r"((solution|error)_\w+|decomposition|loss|l2_error|energy|dissipation)"
                        r"\.png")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


# -- identity ---------------------------------------------------------------------------------
def identity_fields(cfg, pde_params: dict) -> dict:
    """What defines a run's problem and model, flat: {"pde.params.k": 2.0, ...}.

    ``pde_params`` are the PDE's resolved parameters (defaults filled in), so a default
    written out or left implicit is the same identity. Training settings (stages, points,
    conditions, dtype, output, parallel) are not part of it: a run may change them on resume.
    """
    net = cfg.network
    fields = {"pde.name": cfg.pde.name,
              "domain.lower": [float(v) for v in cfg.domain.lower],
              "domain.upper": [float(v) for v in cfg.domain.upper],
              "domain.time": None if cfg.domain.time is None else
              [float(v) for v in cfg.domain.time],
              "domain.periodic": sorted(cfg.domain.periodic),
              "decomposition.grid": [int(v) for v in cfg.decomposition.grid],
              "case.seed": int(cfg.case.seed)}
    for name in ("width", "depth", "activation", "fourier_features", "fourier_scale",
                 "periodic_harmonics", "hard_initial"):  # not compile/derivatives: same model
        fields[f"network.{name}"] = getattr(net, name)
    if net.periodic_modes != "axes":  # added later: the default keeps older identities
        fields["network.periodic_modes"] = net.periodic_modes
    for k, v in sorted(pde_params.items()):
        fields[f"pde.params.{k}"] = _number(v)
    for k, v in sorted(cfg.pde.inverse.items()):
        fields[f"pde.inverse.{k}"] = _number(v)
    return json.loads(json.dumps(fields, default=float))  # plain JSON values, as stored


def _number(value):
    """Parameters as floats: ``k = 2`` and ``k = 2.0`` are the same problem."""
    if isinstance(value, (list, tuple)):
        return [_number(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def fingerprint(fields: dict) -> str:
    """Short SHA-256 of the identity fields (16 hex digits)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def differences(here: dict, there: dict, where: str, limit: int = 4) -> str:
    """``"pde.params.k = 2.0 here, 3.0 in WHERE; ..."`` for the first ``limit`` fields."""
    keys = [k for k in sorted(set(here) | set(there)) if here.get(k) != there.get(k)]
    text = "; ".join(f"{k} = {json.dumps(here.get(k))} here, {json.dumps(there.get(k))} "
                     f"in {where}" for k in keys[:limit])
    return text + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


# -- the lock ---------------------------------------------------------------------------------
class RunLock:
    """Advisory lock of one run directory, held by rank 0 for the life of the process.

    ``flock`` locks belong to the open file: the kernel drops them when the process ends in
    any way (SIGKILL included), so a stale lock is impossible.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self.fh = None

    def acquire(self) -> None:
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunDirError(
                    f"output.dir {str(self.path.parent)!r} is in use by another ddpinn run "
                    f"({holder}); wait for it to end, or choose another output.dir") from None
            log.warning("cannot lock %s (%s): this file system has no flock; make sure no "
                        "other run writes to this directory", self.path, exc.strerror)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()  # drops the lock
            self.fh = None


# -- what a directory holds -------------------------------------------------------------------
def read_run_record(run_dir: Path) -> dict | None:
    """``run.json`` of a directory, or None when there is none."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not {"run_id", "identity", "fields"} <= set(record):
            raise ValueError("missing run_id, identity or fields")
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{str(path)!r} cannot be read ({exc}); move it away to start a "
                          f"new run in {str(run_dir)!r}") from None
    return record


def own_checkpoints(run_dir: Path, run_id: str) -> list:
    """This run's checkpoints in ``run_dir/checkpoints``, oldest first (by the run id in
    their header; another run's files and files named like checkpoints are left out)."""
    return [p for p in checkpoint.list_checkpoints(run_dir / CHECKPOINT_DIR)
            if checkpoint.run_id_of(p) == run_id]


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run: its record, or files of a run of an older ddpinn."""
    return (run_dir / RUN_FILE).exists() or (run_dir / "config.toml").exists() or \
        (run_dir / METRICS_FILE).exists() or \
        bool(checkpoint.list_checkpoints(run_dir / CHECKPOINT_DIR))


def run_outputs(run_dir: Path, run_id: str | None) -> list:
    """Paths, relative to ``run_dir``, of the files the run ``run_id`` wrote (None: an older
    ddpinn's run, whose checkpoints carry no run id)."""
    out = [Path(n) for n in RUN_FILES if (run_dir / n).exists()]
    out += [Path(p.name) for p in sorted(run_dir.iterdir())
            if p.is_file() and EVAL_FILES.fullmatch(p.name)]
    out += [p.relative_to(run_dir) for p in checkpoint.list_checkpoints(run_dir / CHECKPOINT_DIR)
            if checkpoint.run_id_of(p) == run_id]
    series = run_dir / "vtk"  # output.vtk of a space-time grid
    if series.is_dir():
        out += [p.relative_to(run_dir) for p in sorted(series.iterdir())
                if VTK_FILES.fullmatch(p.name)]
    plots = run_dir / "plots"
    if plots.is_dir():
        out += [p.relative_to(run_dir) for p in sorted(plots.iterdir())
                if PLOT_FILES.fullmatch(p.name)]
    return out


def move_aside(run_dir: Path, files: list, run_id: str | None) -> Path:
    """Move ``files`` (relative to ``run_dir``) into ``previous/<time>-<run id>/``, keeping
    their layout; returns that directory."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = run_dir / PREVIOUS_DIR / f"{stamp}-{(run_id or 'old')[:8]}"
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{stamp}-{(run_id or 'old')[:8]}-{n}")
    # run.json last: a move cut short leaves the directory still naming its run
    for rel in sorted(files, key=lambda rel: str(rel) == RUN_FILE):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(run_dir / rel, dest / rel)
    return dest


# -- the plan ---------------------------------------------------------------------------------
@dataclass
class RunPlan:
    """What rank 0 decided for this start, before anything was written.

    Attributes
    ----------
    run_id : the run's id (new for a fresh run, the directory's when continuing it)
    state, resume : the checkpoint to resume (rank 0's loaded copy) and its path, or None
    fresh : no checkpoint: metrics of an earlier attempt of the run are dropped
    aside : files of an older run to move to ``previous/`` (``--overwrite``)
    aside_id : that run's id (None for an older ddpinn's run)
    later : this run's checkpoints after the resumed one (moved aside: superseded)
    """

    run_id: str
    state: dict | None = None
    resume: Path | None = None
    fresh: bool = True
    aside: list = field(default_factory=list)
    aside_id: str | None = None
    later: list = field(default_factory=list)


def _new_id() -> str:
    return uuid.uuid4().hex


def _describe(run_dir: Path, record: dict | None) -> str:
    if record is None:
        return f"{str(run_dir)!r} holds the files of a run (config.toml, metrics.jsonl or " \
               f"checkpoints)"
    return f"{str(run_dir)!r} holds run {record['run_id'][:8]} (case " \
           f"{record.get('case', '?')!r}, identity {record['identity']})"


def plan_run(run_dir: Path, fields: dict, resume: str | None, overwrite: bool) -> RunPlan:
    """Rank 0. Decide how this start uses ``run_dir`` (which must exist and be locked);
    raises :class:`RunDirError` or :class:`~ddpinn.io.checkpoint.CheckpointError`.

    Loads the checkpoint to resume and checks its identity; writes nothing.
    """
    identity = fingerprint(fields)
    record = read_run_record(run_dir)
    held = holds_run(run_dir)
    if overwrite:
        if resume:
            raise RunDirError("--overwrite starts a new run; it cannot be combined with "
                              "--resume")
        old = record["run_id"] if record else None
        return RunPlan(_new_id(), aside=run_outputs(run_dir, old) if held else [],
                       aside_id=old)
    if not resume:
        if held:
            raise RunDirError(f"{_describe(run_dir, record)}; continue it with --resume auto, "
                              f"or start over with --overwrite (moves its files to "
                              f"{str(run_dir / PREVIOUS_DIR)!r}), or choose another output.dir")
        return RunPlan(_new_id())
    if record is not None and record["identity"] != identity:
        raise RunDirError(f"{_describe(run_dir, record)}, another problem or model: "
                          f"{differences(fields, record['fields'], 'that run')}; start over "
                          f"with --overwrite, or choose another output.dir")
    if resume == "auto":
        if record is not None:
            found = own_checkpoints(run_dir, record["run_id"])
            if not found:
                log.info("--resume auto: run %s has no checkpoint yet, starting it again",
                         record["run_id"][:8])
                return RunPlan(record["run_id"])
            state, path = checkpoint.load_newest(found)
            check_identity(state, path, fields)
            return RunPlan(record["run_id"], state, path, fresh=False)
        found = checkpoint.list_checkpoints(run_dir / CHECKPOINT_DIR)
        if not found:
            if held:  # files of an older ddpinn's run without checkpoints: would mix
                raise RunDirError(f"{_describe(run_dir, None)} and no checkpoint to resume; "
                                  f"start over with --overwrite, or choose another output.dir")
            log.info("--resume auto: no checkpoint in %s, starting fresh", run_dir)
            return RunPlan(_new_id())
        # Checkpoints without a run record (copied in, or an older ddpinn's): the newest
        # readable one of this identity; the run continues under its run id.
        state, path = checkpoint.load_newest(found)
        check_identity(state, path, fields)
        return RunPlan(state["meta"].get("run_id") or _new_id(), state, path, fresh=False)
    path = Path(resume)
    state = checkpoint.load(path)
    check_identity(state, path, fields)
    ckpt_run = state["meta"].get("run_id")
    if record is None:
        if held and path.resolve().parent != (run_dir / CHECKPOINT_DIR).resolve():
            raise RunDirError(f"{_describe(run_dir, None)}; resume into another output.dir, "
                              f"or start over there with --overwrite")
        return RunPlan(ckpt_run or _new_id(), state, path, fresh=False)
    if ckpt_run != record["run_id"]:
        raise RunDirError(f"{_describe(run_dir, record)}, not the run of checkpoint "
                          f"{str(path)!r} (run {str(ckpt_run)[:8]}); resume into another "
                          f"output.dir, or start over with --overwrite")
    step = int(state["scalars"]["global_step"])
    later = [p for p in own_checkpoints(run_dir, record["run_id"])
             if checkpoint.step_of(p) > step]
    return RunPlan(record["run_id"], state, path, fresh=False, later=later)


def check_identity(state: dict, path: Path, fields: dict) -> None:
    """Raise :class:`RunDirError` if checkpoint ``state`` is of another problem or model.

    Checkpoints of an older ddpinn carry no identity: their grid is compared (and the
    parameter shapes later, by the trainer)."""
    checkpoint.require_run_state(state, path)
    meta = state["meta"]
    theirs = meta.get("identity_fields")
    if theirs is None:
        grid = list(meta.get("grid", []))
        if grid != fields["decomposition.grid"]:
            raise RunDirError(f"checkpoint {str(path)!r} has grid {grid} but the case has "
                              f"{fields['decomposition.grid']}: it belongs to another "
                              f"decomposition")
        log.warning("checkpoint %s carries no run identity (older ddpinn): only its grid "
                    "and parameter shapes are checked", path)
        return
    if fingerprint(theirs) != fingerprint(fields):
        raise RunDirError(f"checkpoint {str(path)!r} belongs to another problem or model: "
                          f"{differences(fields, theirs, 'the checkpoint')}")


def write_run_record(run_dir: Path, plan: RunPlan, fields: dict, case: str) -> None:
    """Rank 0. ``run.json``: the run id, identity and fields (atomically)."""
    from ddpinn.io.atomic import atomic_write_text

    record = {"run_id": plan.run_id, "identity": fingerprint(fields), "case": case,
              "fields": fields}
    old = run_dir / RUN_FILE
    if old.is_file() and not plan.aside:
        try:
            record["created"] = json.loads(old.read_text()).get("created")
        except (OSError, ValueError):
            pass
    record.setdefault("created", None)
    record["created"] = record["created"] or _dt.datetime.now().isoformat(timespec="seconds")
    atomic_write_text(old, json.dumps(record, indent=1) + "\n")

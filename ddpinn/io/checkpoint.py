"""Checkpoints keyed by subdomain id, restartable on any rank count.

A checkpoint is one file written by rank 0 after gathering every rank's block of experts:

``{"format": 2, "meta": {...}, "blocks": [{"sids": LongTensor (E,), name: Tensor (E, ...)}],
"shared": {...}, "scalars": {...}}``

A block holds one rank's experts stacked along the first axis: every distributed tensor
(parameters, optimizer moments, L-BFGS history, adapted points) with row ``e`` belonging to
subdomain ``sids[e]``. A run on M ranks picks out its own sids by row (:func:`gather_sids`), so
checkpoints move between rank counts. One stacked record per rank keeps thousands of experts to
a few dozen tensors (format 1, still read, had one record per expert). Files are written
atomically; a header line carries the SHA-256 of the payload, so a truncated or corrupted file
is always detected; the payload is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
from pathlib import Path

import torch

from ddpinn.io.atomic import atomic_write_bytes

log = logging.getLogger("ddpinn")

FORMAT = 2
READABLE = (1, 2)
MAGIC = b"DDPINN-CHECKPOINT 1 sha256="
RUN_TAG = b" run="  # after the digest: the id of the run that wrote the file
PATTERN = re.compile(r"ckpt_(\d{8})\.pt")  # the exact names checkpoint_path makes


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says which file and why."""


def pack(named: dict, sids) -> dict:
    """One rank's block: {name: Tensor (E, ...)} -> {"sids": LongTensor (E,), name: Tensor}.

    Detached CPU copies, so training can go on while the block is written."""
    block = {n: t.detach().cpu().clone() for n, t in named.items()}
    block["sids"] = torch.as_tensor([int(s) for s in sids], dtype=torch.long)
    return block


def sids_in(state: dict) -> list:
    """Every subdomain id held by a loaded checkpoint, ascending."""
    if state["format"] == 1:
        return sorted(int(k) for k in state["experts"])
    return sorted(int(s) for b in state["blocks"] for s in b["sids"].tolist())


def gather_sids(state: dict, sids) -> dict:
    """The experts ``sids`` of a loaded checkpoint, in that order: {name: Tensor (E, ...)}.

    Raises :class:`CheckpointError` when one is missing."""
    sids = [int(s) for s in sids]
    if state["format"] == 1:
        per_sid = {int(k): v for k, v in state["experts"].items()}
        missing = [s for s in sids if s not in per_sid]
        if missing:
            raise CheckpointError(f"the checkpoint has no state for subdomains {missing[:8]}")
        names = list(per_sid[sids[0]]) if sids else []
        return {n: torch.stack([per_sid[s][n] for s in sids]) for n in names}
    where = {}  # sid -> (block, row)
    for b, block in enumerate(state["blocks"]):
        for row, s in enumerate(block["sids"].tolist()):
            where[s] = (b, row)
    missing = [s for s in sids if s not in where]
    if missing:
        raise CheckpointError(f"the checkpoint has no state for subdomains {missing[:8]}")
    blocks = state["blocks"]
    first = blocks[0] if blocks else {}
    out = {n: t.new_empty((len(sids), *t.shape[1:])) for n, t in first.items() if n != "sids"}
    # One index_select per block and name, placed at the requested positions.
    for b, block in enumerate(blocks):
        pos = [i for i, s in enumerate(sids) if where[s][0] == b]
        if not pos:
            continue
        rows = torch.as_tensor([where[sids[i]][1] for i in pos], dtype=torch.long)
        for n, t in out.items():
            t[pos] = block[n].index_select(0, rows)
    return out


def record(state: dict, sid: int) -> dict:
    """One expert's state {name: Tensor (...)} (inspection and tests)."""
    return {n: t[0] for n, t in gather_sids(state, [sid]).items()}


def checkpoint_path(directory, step: int) -> Path:
    return Path(directory) / f"ckpt_{step:08d}.pt"


def list_checkpoints(directory) -> list:
    """Checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def run_id_of(path) -> str | None:
    """The run id in a checkpoint's header line (None: unreadable, or an older file)."""
    try:
        with open(path, "rb") as fh:
            header = fh.readline(256)
    except OSError:
        return None
    _, tag, run = header.rstrip(b"\n").partition(RUN_TAG)
    return run.decode(errors="replace") if header.startswith(MAGIC) and tag else None


def save(path, comm, block: dict | None, shared: dict, scalars: dict, meta: dict,
         keep: int = 0):
    """Collective. Gather the ranks' blocks on rank 0 and write one checkpoint atomically.

    Parameters
    ----------
    block : this rank's experts from :func:`pack`, or None when another rank holds the
        same experts (replicas)
    shared, scalars, meta : replicated state (taken from rank 0)
    keep : keep only the newest ``keep`` checkpoints in the directory (0: all)
    """
    gathered = comm.gather(block)
    if comm.rank == 0:
        blocks = [b for b in gathered if b is not None and len(b["sids"])]
        state = {"format": FORMAT, "meta": meta, "blocks": blocks,
                 "shared": {k: v.detach().cpu() for k, v in shared.items()},
                 "scalars": scalars}
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        run_id = str(meta.get("run_id", "")).encode()
        header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + \
            (RUN_TAG + run_id if run_id else b"") + b"\n"
        path = Path(path)
        atomic_write_bytes(path, header + payload)
        if keep > 0:  # this run's files only (or, without a run id, files without one)
            own = [p for p in list_checkpoints(path.parent)
                   if run_id_of(p) == (run_id.decode() or None)]
            for old in own[:-keep]:
                old.unlink(missing_ok=True)
    comm.barrier()


def load(path) -> dict:
    """Read and verify a checkpoint; raises :class:`CheckpointError` with the reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc.strerror}") from None
    header, _, payload = data.partition(b"\n")
    if not header.startswith(MAGIC):
        raise CheckpointError(f"{str(path)!r} is not a ddpinn checkpoint (no header) or it "
                              f"cannot be read")
    digest = header[len(MAGIC):].partition(RUN_TAG)[0]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or truncated "
                              f"(checksum mismatch)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {exc}") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        raise CheckpointError(f"{str(path)!r} is not a ddpinn checkpoint (formats "
                              f"{', '.join(map(str, READABLE))})")
    return state


def require_run_state(state: dict, path) -> None:
    """Raise :class:`CheckpointError` unless a loaded checkpoint holds what ``ddpinn run``
    needs to resume (meta, scalars, experts); names what is missing."""
    body = ("experts",) if state["format"] == 1 else ("blocks",)
    missing = [k for k in ("meta", "shared", "scalars", *body) if not isinstance(
        state.get(k), list if k == "blocks" else dict)]
    meta, scalars = (state.get(k) if isinstance(state.get(k), dict) else {}
                     for k in ("meta", "scalars"))
    missing += [k for k in ("grid", "n_subdomains") if k not in meta]
    missing += [k for k in ("global_step", "stage_index", "stage_step", "epoch")
                if k not in scalars]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}: it was "
                              f"not written by 'ddpinn run'")


def step_of(path) -> int:
    return int(PATTERN.fullmatch(Path(path).name).group(1))


def load_newest(paths):
    """Load the newest readable checkpoint of ``paths`` (oldest first), skipping corrupted
    or truncated ones with a warning. Returns (state, path); raises CheckpointError if none
    can be read."""
    reasons = []
    for path in reversed(list(paths)):
        try:
            state = load(path)
        except CheckpointError as exc:
            log.warning("%s; falling back to an older checkpoint", exc)
            reasons.append(str(exc))
            continue
        return state, Path(path)
    raise CheckpointError("no usable checkpoint: " + ("; ".join(reasons) or "none found"))

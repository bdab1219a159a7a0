"""Checkpoints keyed by subdomain id, restartable on any rank count.

A checkpoint is one file written by rank 0 after gathering every expert's state:

``{"format": 1, "meta": {...}, "experts": {"<sid>": {name: Tensor}}, "shared": {...},
"scalars": {...}}``

Per-expert entries hold the expert's slice of every distributed tensor (parameters,
optimizer moments, L-BFGS history), so a run on M ranks picks out its own sids. Files are
written atomically; a header line carries the SHA-256 of the payload, so a truncated or
corrupted file is always detected; the payload is read with ``torch.load(weights_only=True)``.
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

FORMAT = 1
MAGIC = b"DDPINN-CHECKPOINT 1 sha256="
PATTERN = re.compile(r"ckpt_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says which file and why."""


def split_by_sid(named: dict, sids) -> dict:
    """{name: Tensor (E, ...)} -> {sid: {name: Tensor (...)}}."""
    return {int(s): {n: t[e].detach().cpu().clone() for n, t in named.items()}
            for e, s in enumerate(sids)}


def stack_sids(per_sid: dict, sids, names) -> dict:
    """Inverse of :func:`split_by_sid` for the experts ``sids``: {name: Tensor (E, ...)}."""
    return {n: torch.stack([per_sid[int(s)][n] for s in sids]) for n in names}


def checkpoint_path(directory, step: int) -> Path:
    return Path(directory) / f"ckpt_{step:08d}.pt"


def list_checkpoints(directory) -> list:
    """Checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := PATTERN.search(p.name))]
    return [p for _, p in sorted(found)]


def save(path, comm, experts: dict, shared: dict, scalars: dict, meta: dict, keep: int = 0):
    """Collective. Gather per-sid states on rank 0 and write one checkpoint atomically.

    Parameters
    ----------
    experts : {sid: {name: Tensor}} for this rank's experts
    shared, scalars, meta : replicated state (taken from rank 0)
    keep : keep only the newest ``keep`` checkpoints in the directory (0: all)
    """
    gathered = comm.gather(experts)
    if comm.rank == 0:
        merged = {}
        for part in gathered:
            merged.update({str(s): v for s, v in part.items()})
        state = {"format": FORMAT, "meta": meta, "experts": merged,
                 "shared": {k: v.detach().cpu() for k, v in shared.items()},
                 "scalars": scalars}
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
        path = Path(path)
        atomic_write_bytes(path, header + payload)
        if keep > 0:
            for old in list_checkpoints(path.parent)[:-keep]:
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
    if hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC):]:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or truncated "
                              f"(checksum mismatch)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a ddpinn checkpoint (format {FORMAT})")
    return state


def step_of(path) -> int:
    return int(PATTERN.search(Path(path).name).group(1))


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

"""Collective-safe error handling: a failure on one rank never leaves the others hanging."""
from __future__ import annotations

import os
import sys
import time
import traceback


class DDPINNError(RuntimeError):
    """An error with a message meant for the user (no traceback needed)."""


def install_abort_hook(comm) -> None:
    """After an uncaught exception on any rank, print it and abort the whole job.

    ``MPI_Abort`` brings down every rank within seconds, whatever they are blocked in.
    The launcher may drop output still in flight when it kills the job, so the message
    goes first, in one line, and the whole report is one write, followed by a short
    pause that lets the launcher forward it.
    """
    if comm.size == 1:
        return

    def hook(exc_type, exc, tb):
        headline = f"[rank {comm.rank}] uncaught {exc_type.__name__}: {exc}; " \
                   f"aborting all {comm.size} ranks\n"
        report = headline + "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            sys.stderr.flush()
            data = report.encode(errors="replace")
            while data:
                data = data[os.write(sys.stderr.fileno(), data):]
        except (OSError, ValueError):
            sys.__stderr__.write(report)
        time.sleep(0.5)
        comm.abort(1)

    sys.excepthook = hook


def agree(comm, error: BaseException | None) -> None:
    """Collective. Raise the same error on every rank if it happened on any rank.

    Each rank passes the exception it caught (or None). If any rank failed, every rank
    raises :class:`DDPINNError` with the message of the lowest failing rank, so they all
    stop together and the message is printed once (by rank 0). With ``DDPINN_DEBUG=1``
    the failing rank also prints the traceback.
    """
    if error is not None and os.environ.get("DDPINN_DEBUG"):
        traceback.print_exception(type(error), error, error.__traceback__)
    msg = None if error is None else (str(error) or type(error).__name__)
    messages = comm.allgather(msg)
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        rank, text = failed[0]
        where = f" (on rank {rank})" if comm.size > 1 and error is None else ""
        raise DDPINNError(text + where)

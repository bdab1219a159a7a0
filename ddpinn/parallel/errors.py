"""Collective-safe error handling: a failure on one rank never leaves the others hanging."""
from __future__ import annotations

import os
import sys
import time
import traceback


# Exit statuses of ddpinn's commands, defined once.
EXIT_CONFIG = 2  # bad input: case file, overrides, run directory, resume checkpoint
EXIT_RUNTIME = 3  # stopped during training (diverged, a runtime check)
EXIT_REQUEUE = 85  # preempted: a checkpoint was written, the batch system may requeue


class DDPINNError(RuntimeError):
    """An error with a message meant for the user (no traceback needed)."""


class CollectiveExit(SystemExit):
    """An exit every rank takes together (an agreed error, preemption); any other
    ``SystemExit`` on one rank ends the whole job (:func:`end_job_on_lone_exit`)."""


def _report_and_abort(comm, report: str, code: int) -> None:
    """Write ``report`` to stderr in one piece, give the launcher a moment to forward it,
    then abort every rank with ``code``."""
    try:
        sys.stderr.flush()
        data = report.encode(errors="replace")
        while data:
            data = data[os.write(sys.stderr.fileno(), data):]
    except (OSError, ValueError):
        sys.__stderr__.write(report)
    time.sleep(0.5)
    comm.abort(code)


def end_job_on_lone_exit(comm, exc: BaseException) -> None:
    """A ``SystemExit`` (e.g. ``sys.exit`` in a plugin) or ``KeyboardInterrupt`` on this rank
    that the others do not take: abort the job instead of leaving them waiting forever.

    The exit status is the one asked for, or 1 for ``sys.exit(0)`` and ``KeyboardInterrupt``
    (a job that lost a rank did not succeed)."""
    if comm.size == 1:
        return
    code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 0
    what = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
    report = f"[rank {comm.rank}] {what} on this rank alone; aborting all {comm.size} ranks\n" \
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _report_and_abort(comm, report, code or 1)


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
        _report_and_abort(comm, report, 1)

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

"""The abort hook's report: the message first, in one line, before the job is aborted."""
import sys

from ddpinn.parallel.errors import install_abort_hook


class RecordingComm:
    """Stands in for a 4-rank communicator; records the abort instead of ending the process."""

    rank, size = 1, 4

    def __init__(self):
        self.aborted_with = None

    def abort(self, code):
        self.aborted_with = code


def test_report_leads_with_the_message_and_then_aborts(monkeypatch, capfd):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr("ddpinn.parallel.errors.time.sleep", lambda s: None)
    comm = RecordingComm()
    install_abort_hook(comm)
    try:
        raise RuntimeError("boom in the residual")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    err = capfd.readouterr().err
    first, *rest = err.splitlines()
    assert first == "[rank 1] uncaught RuntimeError: boom in the residual; aborting all 4 ranks"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom in the residual"
    assert comm.aborted_with == 1


def test_one_rank_keeps_the_default_hook(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    before = sys.excepthook
    comm = RecordingComm()
    comm.size = 1
    install_abort_hook(comm)
    assert sys.excepthook is before


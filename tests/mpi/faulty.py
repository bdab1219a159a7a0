"""PDE plugins that fail on one rank mid-training, to test that the job ends quickly."""
import os
import sys

from ddpinn.pdes.elliptic import Poisson


class _CountsEvaluations(Poisson):
    """Counts loss evaluations: a loss evaluates the residual on slices of one batch of
    points (the interface block first, then the rest), so calls on the same batch count once."""

    evaluations = 0
    _last = None

    def _count(self, f) -> int:
        batch = f.x if f.x._base is None else f.x._base
        if batch is not type(self)._last:
            type(self)._last = batch
            type(self).evaluations += 1
        return type(self).evaluations

    @staticmethod
    def _rank() -> str:
        return os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))


class FailingPoisson(_CountsEvaluations):
    """Poisson that raises on rank ``FAIL_RANK`` after ``FAIL_AFTER`` evaluations."""

    def residual(self, f, p):
        n = self._count(f)
        if self._rank() == os.environ.get("FAIL_RANK", "1") and \
                n > int(os.environ.get("FAIL_AFTER", "5")):
            raise RuntimeError("injected failure on one rank")
        return super().residual(f, p)


class NaNPoisson(_CountsEvaluations):
    """Poisson whose residual is NaN on rank ``NAN_RANK`` for evaluations in
    [NAN_FROM, NAN_TO) of that process: a transient blow-up that a rollback survives, or,
    with a large NAN_TO, a persistent one."""

    def residual(self, f, p):
        n = self._count(f)
        r = super().residual(f, p)
        if self._rank() == os.environ.get("NAN_RANK", "1") and \
                int(os.environ["NAN_FROM"]) <= n < int(os.environ["NAN_TO"]):
            return r * float("nan")
        return r


class ExitingPoisson(_CountsEvaluations):
    """Poisson that calls ``sys.exit(EXIT_CODE)`` on rank ``EXIT_RANK`` after
    ``EXIT_AFTER`` evaluations, as a careless plugin might; the other ranks go on."""

    def residual(self, f, p):
        n = self._count(f)
        if self._rank() == os.environ.get("EXIT_RANK", "1") and \
                n > int(os.environ.get("EXIT_AFTER", "5")):
            sys.exit(int(os.environ.get("EXIT_CODE", "0")))
        return super().residual(f, p)

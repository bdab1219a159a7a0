"""A PDE plugin that fails on one rank mid-training, to test that the job ends quickly."""
import os

from ddpinn.pdes.elliptic import Poisson


class FailingPoisson(Poisson):
    """Poisson that raises on rank ``FAIL_RANK`` after ``FAIL_AFTER`` residual calls."""

    calls = 0

    def residual(self, f, p):
        FailingPoisson.calls += 1
        rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
        if rank == os.environ.get("FAIL_RANK", "1") and \
                FailingPoisson.calls > int(os.environ.get("FAIL_AFTER", "5")):
            raise RuntimeError("injected failure on one rank")
        return super().residual(f, p)


class NaNPoisson(Poisson):
    """Poisson whose residual is NaN on rank ``NAN_RANK`` for residual calls in
    [NAN_FROM, NAN_TO) of that process: a transient blow-up that a rollback survives, or,
    with a large NAN_TO, a persistent one."""

    calls = 0

    def residual(self, f, p):
        NaNPoisson.calls += 1
        r = super().residual(f, p)
        rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
        if rank == os.environ.get("NAN_RANK", "1") and \
                int(os.environ["NAN_FROM"]) <= NaNPoisson.calls < int(os.environ["NAN_TO"]):
            return r * float("nan")
        return r

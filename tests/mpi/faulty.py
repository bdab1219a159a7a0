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

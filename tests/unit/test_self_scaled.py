"""The self-scaled quasi-Newton core (ddpinn.training.self_scaled) on one process."""
from __future__ import annotations

import math

import pytest
import torch

from ddpinn.parallel.comm import SerialComm
from ddpinn.training.self_scaled import SCALINGS, DenseSelfScaled

VARIANTS = sorted(SCALINGS)


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """Sum over rows of x (E, 2) of (1 - x0)^2 + 100 (x1 - x0^2)^2 (a least-squares problem
    with residuals 1 - x0 and 10 (x1 - x0^2)); minimum 0 at x = (1, 1)."""
    return ((1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2).sum()


def make(start, shared=None, variant="ssbfgs", lr=1.0, max_evals=25):
    x = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    z = [torch.nn.Parameter(torch.tensor(shared, dtype=torch.float64))] if shared else []

    def closure():
        for p in [x] + z:
            p.grad = None
        loss = rosenbrock(x)
        if z:  # a shared parameter coupled to every expert
            loss = loss + ((z[0] - x[:, 0].sum() / len(x)) ** 2).sum()
        loss.backward()
        return float(loss.detach())

    opt = DenseSelfScaled([x], z, SerialComm(), range(len(start)), len(start),
                          variant=variant, lr=lr, max_evals=max_evals)
    return x, z, opt, closure


@pytest.mark.parametrize("variant", VARIANTS)
def test_reaches_the_rosenbrock_minimum(variant):
    x, _, opt, closure = make([[-1.2, 1.0]], variant=variant)
    losses = [closure()] + [opt.step(closure) for _ in range(80)]
    assert losses[-1] < 1e-20, losses[-5:]
    assert torch.allclose(x.detach(), torch.ones(1, 2, dtype=torch.float64), atol=1e-10)
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # never increases


@pytest.mark.parametrize("variant", VARIANTS)
def test_several_experts_and_a_shared_parameter(variant):
    start = [[-1.2, 1.0], [0.5, -0.3], [2.0, 3.5]]
    x, z, opt, closure = make(start, shared=[0.7], variant=variant)
    assert opt.n == 3 * 2 + 1 and opt.H_dist.shape == (3, 2, 7)
    losses = [closure()] + [opt.step(closure) for _ in range(150)]
    assert losses[-1] < 1e-18, losses[-5:]
    assert torch.allclose(x.detach(), torch.ones(3, 2, dtype=torch.float64), atol=1e-8)
    assert abs(float(z[0].detach()) - 1.0) < 1e-8


@pytest.mark.parametrize("variant", VARIANTS)
def test_update_satisfies_the_secant_equation_and_stays_symmetric(variant):
    x, z, opt, closure = make([[-1.2, 1.0], [0.3, 0.2]], shared=[0.1], variant=variant)
    closure()
    for _ in range(4):
        g0 = opt._grad()
        before = [p.detach().clone() for p in (x, *z)]
        opt.step(closure)
        if opt.fresh:  # update skipped (curvature condition): nothing to check
            continue
        s = opt._flat([p.detach() - b for p, b in zip((x, *z), before)])
        y = tuple(a - b for a, b in zip(opt._grad(), g0))
        H = torch.cat([opt.H_dist.reshape(-1, opt.n), opt.H_shared])
        y_full, s_full = opt._gather([y, s])
        assert torch.allclose(H @ y_full, s_full, rtol=1e-8, atol=1e-12)  # H+ y = s
        assert torch.allclose(H, H.T, rtol=1e-10, atol=1e-12)
        assert torch.linalg.eigvalsh((H + H.T) / 2).min() > 0  # positive definite


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_diverging_step_is_rejected(variant):
    """Every step tried 100 times too long: the line search backtracks, the loss never
    rises; with too few evaluations to find a decrease, the point stays and H is reset."""
    x, _, opt, closure = make([[-1.2, 1.0]], variant=variant, lr=100.0)
    losses = [closure()] + [opt.step(closure) for _ in range(40)]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 1e-3 * losses[0]
    x, _, opt, closure = make([[-1.2, 1.0]], variant=variant, lr=1e6, max_evals=3)
    start, first = x.detach().clone(), closure()
    assert opt.step(closure) == first and torch.equal(x.detach(), start) and opt.fresh


def test_a_nan_loss_is_never_accepted():
    """NaN losses in the line search are rejected like increases."""
    x, _, opt, closure = make([[-1.2, 1.0]])
    calls = {"n": 0}

    def sometimes_nan():
        calls["n"] += 1
        loss = closure()
        return math.nan if calls["n"] in (2, 3) else loss

    losses = [sometimes_nan()] + [opt.step(sometimes_nan) for _ in range(10)]
    assert all(math.isfinite(v) for v in losses)
    assert all(b <= a for a, b in zip(losses, losses[1:]))


def test_scalings():
    """SSBFGS: tau = h on the first update (initial scaling), then min(1, 1/b), phi = 1.
    SSBroyden: phi from theta; with theta at (1 - b)/b inside its bounds."""
    assert SCALINGS["ssbfgs"](b=2.0, h=3.0, first=True, n=10) == (3.0, 1.0)
    assert SCALINGS["ssbfgs"](b=2.0, h=3.0, first=False, n=10) == (0.5, 1.0)
    assert SCALINGS["ssbfgs"](b=0.5, h=3.0, first=False, n=10) == (1.0, 1.0)
    b, h, n = 2.0, 0.8, 10
    tau, phi = SCALINGS["ssbroyden"](b=b, h=h, first=False, n=n)
    a = b * h - 1
    theta = (1 - b) / b  # -0.5; bounds: (rho_m - 1)/a = -0.875 and 1/rho_m
    sigma = 1 + a * theta
    assert phi == pytest.approx((1 - theta) / sigma)
    assert tau == pytest.approx(min(min(1, 1 / b) * abs(sigma) ** (1 / (1 - n)), sigma))


def test_memory_check_counts_the_dense_matrix_and_refuses(monkeypatch):
    """poisson2d has 4 x 2241 parameters: the rank's rows of H are 8 x (E 2241) x 8964
    bytes, a quarter of them per rank on 4 ranks; a limit that lbfgs fits refuses ssbfgs
    before anything is built, with a hint to use more ranks."""
    from pathlib import Path

    from ddpinn.io.config import load
    from ddpinn.parallel.errors import DDPINNError
    from ddpinn.problem import build_problem
    from ddpinn.training.memory import LIMIT_ENV, check_memory, estimate_rank_memory

    deck = Path(__file__).resolve().parents[2] / "cases" / "poisson2d.toml"
    cfg = load(deck, ['stages.1.optimizer="ssbfgs"'])
    problem = build_problem(cfg)
    n = 4 * 2241
    for ranks in (1, 4):
        est = estimate_rank_memory(cfg, problem, ranks)
        assert est["optimizer"] == pytest.approx(8 * (n / ranks) * n + 12 * 8 * n)
    lbfgs = load(deck, [])
    low = estimate_rank_memory(lbfgs, build_problem(lbfgs), 1)["total"]
    high = estimate_rank_memory(cfg, problem, 1)["total"]
    assert high > low + 8 * n * n * 0.9
    monkeypatch.setenv(LIMIT_ENV, str(int((low + high) / 2)))
    check_memory(lbfgs, build_problem(lbfgs), SerialComm())
    with pytest.raises(DDPINNError, match="not enough memory") as err:
        check_memory(cfg, problem, SerialComm())
    assert "use at least" in str(err.value) and "ranks" in str(err.value)

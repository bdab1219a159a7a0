"""PDE residual of a trained run on fresh points: how far the networks fit their collocation
points rather than the equations between them.

Loads the newest checkpoint of a run directory (every expert, in one process), draws
``--points`` uniform points in each expert's subdomain (a generator of its own, not the
run's), and prints each expert's mean square residual (summed over the equations; the
training metric ``residual`` is that mean on the training points, summed over experts) by
equation and by quarter of the subdomain's last axis (time, in a space-time case), beside the
run's last ``residual`` from ``metrics.jsonl``. Box decompositions only.

    python bench/fresh_residual.py RUN_DIR [--points 6000] [--seed 7]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ddpinn.eval_experts import RankExperts
from ddpinn.evaluation import choose_checkpoint
from ddpinn.io.config import load
from ddpinn.nn.taylor_engine import make_fields
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem


def fresh_residuals(run: Path, n: int, seed: int) -> tuple:
    """``(sids, x (E, n, d) ndarray, res (E, n, q) ndarray, checkpoint name)``."""
    problem = build_problem(load(run / "config.toml"))
    d = problem.decomposition
    # a shape that fills every cell (a box given as a shape, as [[boundary]] tables make it)
    # is a box decomposition; uniform points in a cell partly outside would not be
    if d.shape is not None and not np.all(np.asarray(d.volume_fraction) >= 1.0):
        raise SystemExit("fresh_residual.py: box decompositions only (this run's domain is "
                         "a shape that cuts its cells)")
    state, path = choose_checkpoint(run, None)
    experts = RankExperts(problem, SerialComm(), state)
    dtype = next(experts.model.parameters()).dtype
    rng = np.random.default_rng(seed)
    x = np.stack([rng.uniform(d.lower[s], d.upper[s], size=(n, d.lower.shape[1]))
                  for s in experts.sids])
    xt = torch.tensor(x, dtype=dtype).requires_grad_(True)
    pde = problem.pde
    fields = make_fields(experts.model, xt, pde.axes, pde.outputs, problem.cfg.network.derivatives)
    # Learned coefficients (inverse problems) come from the checkpoint, one copy per expert.
    learned = {k[len("param/"):]: torch.full((len(experts.sids), 1), float(v), dtype=dtype)
               for k, v in (state.get("shared") or {}).items() if k.startswith("param/")}
    res = pde.residual(fields, {**pde.params, **learned}).detach().numpy()
    return experts.sids, x, res, path.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--points", type=int, default=6000, help="fresh points per expert")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    sids, x, res, name = fresh_residuals(args.run, args.points, args.seed)
    rows = [json.loads(ln) for ln in open(args.run / "metrics.jsonl") if ln.strip()]
    sq = (res ** 2).sum(-1)  # (E, n)
    print(f"{args.run} ({name}): training 'residual' {rows[-1]['residual']:.3e}; "
          f"on {args.points} fresh points per expert, summed over experts {sq.mean(1).sum():.3e}")
    for k, sid in enumerate(sids):
        last = x[k, :, -1]
        edges = np.quantile(last, [0.0, 0.25, 0.5, 0.75, 1.0])
        quarters = [sq[k][(last >= a) & (last <= b)].mean() for a, b in zip(edges, edges[1:])]
        print(f"expert {sid}: mean square {sq[k].mean():.3e}; by equation "
              + " ".join(f"{v:.2e}" for v in (res[k] ** 2).mean(0))
              + "; by quarter of the last axis " + " ".join(f"{v:.2e}" for v in quarters))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

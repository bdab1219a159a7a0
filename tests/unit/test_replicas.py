"""Replica shares of the points (no MPI): disjoint, complete, and the replicas' losses and
gradients add up to the loss and gradient of all points; the replica-count checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpinn.decomposition import decompose
from ddpinn.geometry import Box
from ddpinn.interface import exchange
from ddpinn.io.config import ConfigError, PointsSection, from_dict
from ddpinn.nn import BatchedMLP
from ddpinn.parallel import SerialComm
from ddpinn.parallel.replicas import check_replicas, group_ranks
from ddpinn.pdes import PDES
from ddpinn.training.context import StepContext
from ddpinn.training.loss import local_loss
from ddpinn.training.points import build_points

PTS = PointsSection(interior=25, boundary=7, interface=9, data=5)
CONDITIONS = ["average_solution", "residual_continuity", "flux_continuity"]


def heat_setup():
    pde = PDES["heat"](1)
    box = Box((0.0, 0.0), (1.0, 1.0), ("x", "t"))
    return pde, decompose(box, [3, 2], time_axis=1), 1


def batch_of(replica, replicas):
    pde, d, t_axis = heat_setup()
    sids = list(range(d.n_subdomains))
    return build_points(d, sids, pde, PTS, 5, pde.params, t_axis, 0, replica=replica,
                        replicas=replicas)


@pytest.mark.parametrize("replicas", [2, 3])
def test_shares_are_disjoint_and_complete(replicas):
    full = batch_of(0, 1)
    parts = [batch_of(r, replicas) for r in range(replicas)]
    assert len({p.x.shape for p in parts}) == 1  # one padded shape for every replica
    for name in ("res_w", "bc_w", "data_w"):
        whole = getattr(full, name).sum()
        shares = sum(getattr(p, name).sum() for p in parts)
        torch.testing.assert_close(shares, whole, rtol=1e-14, atol=0)
    for e in range(full.x.shape[0]):
        def weighted_rows(b):
            w = (b.res_w[e] > 0) | (b.bc_w[e].sum(-1) > 0) | (b.data_w[e].sum(-1) > 0)
            return {tuple(row) for row in b.x[e][w].tolist()}

        rows = [weighted_rows(p) for p in parts]
        assert set().union(*rows) == weighted_rows(full)
        assert sum(len(r) for r in rows) == len(weighted_rows(full))  # disjoint
    assert sum(p.n_interface for p in parts) == PTS.interface
    assert math.isclose(sum(p.interface_fraction for p in parts), 1.0)


def loss_and_grads(replica, replicas):
    pde, d, t_axis = heat_setup()
    sids = list(range(d.n_subdomains))
    boxes = [d.subdomains[s].box for s in sids]
    model = BatchedMLP(sids, [b.lower for b in boxes], [b.upper for b in boxes], pde.n_out,
                       width=8, depth=2, seed=1)
    batch = batch_of(replica, replicas)
    plan = exchange.InterfacePlan(batch.sides, sids, np.zeros(len(sids), int), 0,
                                  batch.n_interface, batch.x.shape[1])
    ctx = StepContext.of(pde, batch, plan, SerialComm(), CONDITIONS)
    terms = local_loss(ctx, model, pde.params)
    terms.total.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return terms.metrics, grads


@pytest.mark.parametrize("replicas", [2, 3])
def test_replica_losses_and_gradients_add_up(replicas):
    metrics, grads = loss_and_grads(0, 1)
    parts = [loss_and_grads(r, replicas) for r in range(replicas)]
    for k in ("loss", "residual", "boundary", "data", "if_flux_continuity",
              "mismatch_space", "sides_space", "sides_time"):
        np.testing.assert_allclose(sum(m[k] for m, _ in parts), metrics[k], rtol=1e-12,
                                   atol=1e-15)
    torch.testing.assert_close(sum(g for _, g in parts), grads, rtol=1e-11, atol=1e-14)


def test_replica_counts():
    assert check_replicas(8, 2, 4) == 4
    assert group_ranks(6, 3) == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="'parallel.replicas' = 3 does not divide the 4 ranks"):
        check_replicas(4, 3, 8)
    with pytest.raises(ValueError, match="make 4 groups but only 2 subdomains"):
        check_replicas(8, 2, 2)


def test_config_replicas():
    base = {"domain": {"lower": [0.0], "upper": [1.0]}, "pde": {"name": "poisson"},
            "decomposition": {"grid": [2]}}
    assert from_dict({**base, "parallel": {"replicas": 4}}).parallel.replicas == 4
    with pytest.raises(ConfigError, match="'parallel.replicas' = 0 must be >= 1"):
        from_dict({**base, "parallel": {"replicas": 0}})
    with pytest.raises(ConfigError, match="'points.boundary' = 2 must be >= parallel.replicas"):
        from_dict({**base, "parallel": {"replicas": 3}, "points": {"boundary": 2}})


def test_info_shows_groups_and_replicas(capsys):
    from pathlib import Path

    from ddpinn.cli import main

    case = Path(__file__).resolve().parents[1] / "mpi" / "cases" / "invariance.toml"
    assert main(["info", str(case), "--ranks", "4", "--set", "parallel.replicas=2"]) == 0
    out = capsys.readouterr().out
    assert "partition over 2 groups of 2 replicas (4 ranks)" in out
    rows = [ln.split() for ln in out.splitlines() if ln.split()[:2] in (["0", "0-1"],
                                                                        ["1", "2-3"])]
    # Each replica exchanges its share (6 of 12 points) of the 2 interfaces to the other group.
    assert [r[:3] for r in rows] == [["0", "0-1", "4"], ["1", "2-3", "4"]]
    assert all(r[5] == "12" for r in rows)
    assert main(["info", str(case), "--ranks", "6", "--set", "parallel.replicas=4"]) == 2
    assert "'parallel.replicas' = 4 does not divide the 6 ranks" in capsys.readouterr().err

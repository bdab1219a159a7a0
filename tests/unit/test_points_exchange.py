"""Collocation points keyed by sid (identical interface points on both sides, determinism,
independence of the rank's block) and the interface exchange plan (local partners on one
rank; a simulated two-rank exchange that agrees on the buffer layout)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpinn.decomposition import decompose, owned_sids, partition
from ddpinn.geometry import Box
from ddpinn.interface import exchange
from ddpinn.interface.conditions import QUANTITIES
from ddpinn.io.config import PointsSection
from ddpinn.nn import BatchedMLP, Fields
from ddpinn.parallel import SerialComm
from ddpinn.pdes import PDES
from ddpinn.training.points import build_points, interface_points

PTS = PointsSection(interior=24, boundary=6, interface=8, data=0)


def advection_setup(grid=(3, 2)):
    """1D advection, periodic in x, (x, t) with a time axis."""
    pde = PDES["advection"](1)
    box = Box((0.0, 0.0), (2 * math.pi, 1.0), ("x", "t"))
    return pde, decompose(box, list(grid), [True, False], time_axis=1), 1


def poisson_setup(grid=(3, 2)):
    pde = PDES["poisson"](2)
    box = Box((0.0, 0.0), (1.0, 1.0), ("x", "y"))
    return pde, decompose(box, list(grid)), None


def heat_data_setup():
    pde = PDES["heat"](2)
    box = Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ("x", "y", "t"))
    return pde, decompose(box, [2, 1, 2], time_axis=2), 2


SETUPS = {"advection": advection_setup, "poisson": poisson_setup, "heat": heat_data_setup}


def build(setup, sids=None, seed=11, epoch=0, points=PTS):
    pde, d, t_axis = setup
    sids = list(range(d.n_subdomains)) if sids is None else sids
    return build_points(d, sids, pde, points, seed, pde.params, t_axis, epoch)


def row_count(d, sid, t_axis, points=PTS):
    return (points.interior + points.boundary * len(d.boundary_faces(sid, t_axis))
            + points.data + points.interface * len(d.interfaces_of(sid)))


# -- interface points ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SETUPS))
def test_interface_points_identical_on_both_sides(name):
    pde, d, t_axis = SETUPS[name]()
    assert any(itf.wrap for itf in d.interfaces) == (name == "advection")
    for itf in d.interfaces:
        a = interface_points(itf, itf.lower, 10, seed=4)
        b = interface_points(itf, itf.upper, 10, seed=4)
        assert a.shape == (10, d.box.dim)
        tang = [k for k in range(d.box.dim) if k != itf.axis]
        np.testing.assert_array_equal(a[:, tang], b[:, tang])
        assert np.all(a[:, itf.axis] == itf.coord_lower)
        assert np.all(b[:, itf.axis] == itf.coord_upper)
        if itf.wrap:
            assert a[0, itf.axis] == d.box.upper[itf.axis]
            assert b[0, itf.axis] == d.box.lower[itf.axis]
        else:
            np.testing.assert_array_equal(a, b)
        # Inside the shared face.
        face = d.subdomains[itf.lower].box
        for k in tang:
            assert np.all((a[:, k] >= face.lower[k]) & (a[:, k] <= face.upper[k]))


def test_interface_points_in_the_batch_match_across_sides():
    setup = advection_setup()
    pde, d, _ = setup
    batch = build(setup)
    rows = {(itf.iid, e): batch.x[e, r:r + batch.n_interface].numpy()
            for e, r, itf in batch.sides}
    assert len(rows) == 2 * len(d.interfaces)
    for itf in d.interfaces:
        a, b = rows[(itf.iid, itf.lower)], rows[(itf.iid, itf.upper)]
        tang = [k for k in range(d.box.dim) if k != itf.axis]
        np.testing.assert_array_equal(a[:, tang], b[:, tang])
        if not itf.wrap:
            np.testing.assert_array_equal(a, b)
        else:
            assert np.all(a[:, itf.axis] == 2 * math.pi) and np.all(b[:, itf.axis] == 0.0)


# -- determinism and seeds ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SETUPS))
def test_points_deterministic_per_seed(name):
    setup = SETUPS[name]()
    a, b = build(setup, seed=3), build(setup, seed=3)
    for field in ("x", "res_w", "bc_w", "bc_target", "data_w", "data_target"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert [(e, r, i.iid) for e, r, i in a.sides] == [(e, r, i.iid) for e, r, i in b.sides]
    c = build(setup, seed=4)
    assert c.x.shape == a.x.shape
    n = PTS.interior
    assert not torch.allclose(a.x[:, :n], c.x[:, :n])
    e, r, _ = a.sides[0]
    assert not torch.equal(a.x[e, r:r + PTS.interface], c.x[e, r:r + PTS.interface])
    # A new epoch draws new points too.
    d_ = build(setup, seed=3, epoch=1)
    assert not torch.allclose(a.x[:, :n], d_.x[:, :n])


@pytest.mark.parametrize("name", sorted(SETUPS))
@pytest.mark.parametrize("alone", [[1], [3, 0], [2]])
def test_block_independence(name, alone):
    """The rows of an expert do not depend on which other experts the rank owns."""
    setup = SETUPS[name]()
    pde, d, t_axis = setup
    if max(alone) >= d.n_subdomains:
        pytest.skip("not enough subdomains")
    full = build(setup)
    part = build(setup, sids=alone)
    for e_part, sid in enumerate(alone):
        n = row_count(d, sid, t_axis)
        assert part.x.shape[1] >= n
        for field in ("x", "res_w", "bc_w", "bc_target"):
            tf, tp = getattr(full, field), getattr(part, field)
            assert torch.equal(tf[sid, :n], tp[e_part, :n]), (field, sid)
        sides_full = [(r, i.iid) for e, r, i in full.sides if e == sid]
        sides_part = [(r, i.iid) for e, r, i in part.sides if e == e_part]
        assert sides_full == sides_part


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_padding_rows_have_zero_weight(name):
    setup = SETUPS[name]()
    pde, d, t_axis = setup
    points = PointsSection(interior=24, boundary=6, interface=8,
                           data=5 if name == "heat" else 0)
    batch = build(setup, points=points)
    E, N, dim = batch.x.shape
    sizes = [row_count(d, s, t_axis, points) for s in range(d.n_subdomains)]
    assert N == max(sizes) and min(sizes) < N  # there is padding to check
    side_rows = {(e, r + i) for e, r, _ in batch.sides for i in range(batch.n_interface)}
    for e in range(E):
        n = sizes[e]
        assert torch.all(batch.res_w[e, n:] == 0)
        assert torch.all(batch.bc_w[e, n:] == 0)
        assert torch.all(batch.data_w[e, n:] == 0)
        assert not any((e, r) in side_rows for r in range(n, N))
        # Padding rows are valid points of the subdomain (finite network inputs).
        box = d.subdomains[e].box
        assert torch.all(batch.x[e] >= torch.tensor(box.lower, dtype=batch.x.dtype))
        assert torch.all(batch.x[e] <= torch.tensor(box.upper, dtype=batch.x.dtype))


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_weights_normalised(name):
    setup = SETUPS[name]()
    pde, d, t_axis = setup
    points = PointsSection(interior=24, boundary=6, interface=8,
                           data=5 if name == "heat" else 0)
    batch = build(setup, points=points)
    torch.testing.assert_close(batch.res_w.sum(1), torch.ones(d.n_subdomains,
                                                                dtype=torch.float64))
    for e in range(d.n_subdomains):
        has_bc = bool(d.boundary_faces(e, t_axis))
        # Each constrained output's boundary weights sum to 1 over the expert's faces.
        total = float(batch.bc_w[e].sum())
        assert (total > 0) == has_bc
        if has_bc:
            assert total == pytest.approx(1.0 * pde.n_out)
        if points.data:
            assert float(batch.data_w[e].sum()) == pytest.approx(pde.n_out)
            rows = batch.data_w[e, :, 0] > 0
            exact = pde.exact(batch.x[e, rows], pde.params)
            torch.testing.assert_close(batch.data_target[e, rows], exact)


def test_boundary_targets():
    setup = poisson_setup()
    pde, d, _ = setup
    batch = build(setup)
    rows = batch.bc_w[..., 0] > 0
    x = batch.x[rows]
    torch.testing.assert_close(batch.bc_target[rows], pde.exact(x, pde.params))
    on_boundary = (x == 0) | (x == 1)
    assert torch.all(on_boundary.any(-1))


# -- exchange plan ------------------------------------------------------------------------------
def model_for(d, sids, pde, seed=2):
    boxes = [d.subdomains[s].box for s in sids]
    periods = [d.box.width[a] if d.periodic[a] else None for a in range(d.box.dim)]
    return BatchedMLP(sids, [b.lower for b in boxes], [b.upper for b in boxes], pde.n_out,
                      width=8, depth=2, periods=periods, seed=seed)


def side_values(setup, sids, owner, rank, quantities=QUANTITIES):
    pde, d, t_axis = setup
    batch = build(setup, sids=sids)
    plan = exchange.InterfacePlan(batch.sides, sids, owner, rank, batch.n_interface,
                                  batch.x.shape[1])
    x = batch.x.detach().requires_grad_(True)
    f = Fields(x, model_for(d, sids, pde)(x), pde.axes, pde.outputs)
    res = pde.residual(f, pde.params)
    mine = exchange.interface_values(plan, f, res, pde, pde.params, quantities)
    return batch, plan, mine


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_serial_plan_all_local(name):
    setup = SETUPS[name]()
    pde, d, t_axis = setup
    sids = list(range(d.n_subdomains))
    owner = partition(d.grid, 1)
    batch, plan, mine = side_values(setup, sids, owner, 0)
    assert plan.n_sides == 2 * len(d.interfaces)
    assert plan.remote == {} and plan.neighbour_ranks == [] and plan.remote_points() == 0
    assert sorted(plan.local_self.tolist()) == list(range(plan.n_sides))
    # local_partner is an involution pairing the two sides of each interface.
    partner = dict(zip(plan.local_self.tolist(), plan.local_partner.tolist()))
    for s, p in partner.items():
        assert partner[p] == s and p != s
        assert plan.iid[s] == plan.iid[p]
        assert plan.expert[s] != plan.expert[p]
    S, n = plan.n_sides, batch.n_interface
    widths = {"u": pde.n_out, "res": 1, "dn": pde.n_out, "dnn": pde.n_out,
              "dtt": pde.n_out * d.box.dim, "flux": pde.n_out, "gres": d.box.dim}
    for q, v in mine.items():
        assert v.shape == (S, n, widths[q]), q
    comm = SerialComm()
    handle = exchange.post(plan, comm, mine)
    other = exchange.complete(plan, comm, mine, handle)
    assert set(other) == set(mine)
    for q in mine:
        assert not other[q].requires_grad
        for s, p in partner.items():
            assert torch.equal(other[q][s], mine[q][p].detach()), q
    # Independently initialised experts disagree on the interfaces.
    assert float((mine["u"].detach() - other["u"]).abs().max()) > 0


def test_serial_plan_gathers_the_right_rows():
    setup = poisson_setup()
    pde, d, _ = setup
    sids = list(range(d.n_subdomains))
    batch, plan, mine = side_values(setup, sids, partition(d.grid, 1), 0, ("u", "dn"))
    x = batch.x
    u = model_for(d, sids, pde)(x).detach()
    for s, (e, r, itf) in enumerate(batch.sides):
        assert torch.equal(mine["u"][s], u[e, r:r + batch.n_interface])
        assert int(plan.axis[s]) == itf.axis
    # dn is the derivative along each side's normal axis.
    xg = x.detach().requires_grad_(True)
    f = Fields(xg, model_for(d, sids, pde)(xg), pde.axes, pde.outputs)
    g = f.grad(0).detach()
    for s, (e, r, itf) in enumerate(batch.sides):
        torch.testing.assert_close(mine["dn"][s, :, 0].detach(),
                                   g[e, r:r + batch.n_interface, itf.axis])


def test_flux_and_residual_agree_for_exact_solution():
    """Both sides of an interface see the same u, flux and (zero) residual when every expert
    is the exact solution."""
    setup = advection_setup()
    pde, d, t_axis = setup
    sids = list(range(d.n_subdomains))
    batch = build(setup)
    plan = exchange.InterfacePlan(batch.sides, sids, partition(d.grid, 1), 0,
                                  batch.n_interface, batch.x.shape[1])
    x = batch.x.detach().requires_grad_(True)
    f = Fields(x, pde.exact(x, pde.params), pde.axes, pde.outputs)
    res = pde.residual(f, pde.params)
    mine = exchange.interface_values(plan, f, res, pde, pde.params, ("u", "res", "flux", "dn"))
    comm = SerialComm()
    other = exchange.complete(plan, comm, mine, exchange.post(plan, comm, mine))
    for q in ("u", "flux", "dn"):
        torch.testing.assert_close(mine[q].detach(), other[q], rtol=0, atol=1e-12)
    assert float(mine["res"].detach().abs().max()) < 1e-12
    for name in ("average_solution", "residual_continuity", "flux_continuity"):
        losses = exchange.condition_losses([name], mine, other)[name]
        assert float(losses.detach().max()) < 1e-20


class LoopbackComm(SerialComm):
    """Two simulated ranks sharing a mailbox: sends are delivered at wait time."""

    def __init__(self, rank, size, mailbox):
        self.rank, self.size, self.mailbox = rank, size, mailbox

    def post_exchange(self, sends, recv_shapes, dtype, tag=7):
        for r, t in sends.items():
            self.mailbox[(self.rank, r)] = t.detach().clone()
        return recv_shapes

    def wait_exchange(self, handle):
        out = {}
        for r, n in handle.items():
            buf = self.mailbox[(r, self.rank)]
            assert buf.numel() == n, "the two ranks disagree on the buffer size"
            out[r] = buf
        return out


@pytest.mark.parametrize("name,n_ranks", [("advection", 4), ("poisson", 3), ("heat", 2)])
def test_simulated_multi_rank_exchange_matches_serial(name, n_ranks):
    """Each rank's plan sends its remote sides in an order the receiver agrees on: the
    values received equal what one rank computes locally."""
    setup = SETUPS[name]()
    pde, d, t_axis = setup
    all_sids = list(range(d.n_subdomains))
    _, serial_plan, serial_mine = side_values(setup, all_sids, partition(d.grid, 1), 0)
    comm0 = SerialComm()
    serial_other = exchange.complete(serial_plan, comm0, serial_mine,
                                     exchange.post(serial_plan, comm0, serial_mine))
    # Key every side by (iid, sid) to compare layouts across rank counts.
    serial_sides = {(itf.iid, all_sids[e]): s
                    for s, (e, _, itf) in enumerate(build(setup).sides)}

    owner = partition(d.grid, n_ranks)
    mailbox = {}
    ranks = []
    for rank in range(n_ranks):
        sids = owned_sids(owner, rank)
        batch, plan, mine = side_values(setup, sids, owner, rank)
        comm = LoopbackComm(rank, n_ranks, mailbox)
        ranks.append((sids, batch, plan, mine, comm, exchange.post(plan, comm, mine)))
    assert any(plan.remote for _, _, plan, _, _, _ in ranks)
    for sids, batch, plan, mine, comm, handle in ranks:
        other = exchange.complete(plan, comm, mine, handle)
        assert plan.remote_points() == batch.n_interface * sum(
            len(v) for v in plan.remote.values())
        for s, (e, _, itf) in enumerate(batch.sides):
            ref = serial_sides[(itf.iid, sids[e])]
            for q in QUANTITIES:
                torch.testing.assert_close(mine[q][s].detach(), serial_mine[q][ref].detach(),
                                           rtol=0, atol=1e-13)
                torch.testing.assert_close(other[q][s], serial_other[q][ref], rtol=0,
                                           atol=1e-13)


def test_serial_comm_refuses_remote_exchange():
    setup = poisson_setup()
    pde, d, _ = setup
    owner = partition(d.grid, 2)
    sids = owned_sids(owner, 0)
    batch, plan, mine = side_values(setup, sids, owner, 0, ("u",))
    assert plan.remote and plan.neighbour_ranks == [1]
    with pytest.raises(RuntimeError):
        exchange.post(plan, SerialComm(), mine)


def test_one_subdomain_has_no_interfaces():
    """A single subdomain (here periodic in space: the experts carry the periodicity) draws
    interior and initial points, no interface rows, and its loss evaluates."""
    from ddpinn.io.config import load
    from ddpinn.problem import build_problem
    from ddpinn.training.solver import Solver

    case = Path(__file__).resolve().parents[2] / "cases" / "tgv3d_re100.toml"
    cfg = load(case, ["decomposition.grid=[1, 1, 1, 1]", "points.interior=30",
                      "points.boundary=10", "network.width=8", "network.depth=2"])
    solver = Solver(build_problem(cfg), SerialComm())
    assert solver.batch.sides == [] and solver.plan.n_sides == 0
    assert solver.batch.x.shape == (1, 40, 4)
    loss, metrics = solver.closure()
    assert math.isfinite(loss) and loss > 0 and metrics["boundary"] > 0


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_interface_row_starts_every_interface_block(name):
    """``interface_row`` is the same for any block of experts (a minimum over the whole
    decomposition), and every interface side's rows lie at or after it."""
    setup = SETUPS[name]()
    pde, d, _ = setup
    whole = build(setup)
    assert 0 < whole.interface_row < whole.x.shape[1]
    assert min(r for _, r, _ in whole.sides) == whole.interface_row
    for sids in ([0], [d.n_subdomains - 1], [1, 2]):
        assert build(setup, sids=sids).interface_row == whole.interface_row


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_loss_evaluating_the_interface_block_first_is_the_same_loss(name):
    """With early_send, local_loss evaluates rows [interface_row:] first (to send their values
    early) and the others after: the loss, its terms and its gradients are those of one pass
    over all rows."""
    from ddpinn.interface.conditions import ConditionSet
    from ddpinn.training.context import StepContext, StepSettings
    from ddpinn.training.loss import local_loss

    setup = SETUPS[name]()
    pde, d, _ = setup
    sids = list(range(d.n_subdomains))
    batch = build(setup)
    plan = exchange.InterfacePlan(batch.sides, sids, partition(d.grid, 1), 0,
                                  batch.n_interface, batch.x.shape[1])
    model = model_for(d, sids, pde)
    names = ["average_solution", "residual_continuity", "flux_continuity",
             "residual_gradient"]
    conds = ConditionSet.of(names)
    params = list(model.parameters())
    out = []
    for early in (True, False):
        ctx = StepContext.of(pde, batch, plan, SerialComm(), conds,
                             StepSettings(early_send=early), quantities=QUANTITIES)
        terms = local_loss(ctx, model, pde.params)
        out.append((terms, torch.autograd.grad(terms.total, params)))
    (split, g_split), (whole, g_whole) = out
    torch.testing.assert_close(split.total, whole.total, rtol=1e-12, atol=0)
    for k in whole.metrics:
        np.testing.assert_allclose(split.metrics[k], whole.metrics[k], rtol=1e-12, atol=1e-15)
    for a, b in zip(g_split, g_whole):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)

"""[[data]] tables wired into a case: observations reach exactly one expert on any rank
count, boundary values from a file match the closed form they were written from, a reference
file scores the run, and bad tables or files are one ConfigError naming the field."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpinn.io.config import ConfigError, load
from ddpinn.parallel.comm import SerialComm
from ddpinn.problem import build_problem

from tests.helpers import ROOT

HEAT = ROOT / "cases" / "heat1d_inverse_csv.toml"
KOVASZNAY = ROOT / "cases" / "kovasznay_csv_boundary.toml"


def _heat_csv(path, n=200, seed=0, on_edges=True):
    """Noise-free heat data, with rows exactly on the cell edges x = 0.5 and t = 0.5."""
    rng = np.random.default_rng(seed)
    x, t = rng.random(n), rng.random(n)
    if on_edges:
        x[:10], t[10:20], x[20:25], t[20:25] = 0.5, 0.5, 0.5, 0.5
        x[25:30], t[30:35] = 1.0, 0.0
    u = np.exp(-0.1 * math.pi ** 2 * t) * np.sin(math.pi * x)
    np.savetxt(path, np.stack([x, t, u], 1), delimiter=",", header="x,t,u", comments="")
    return np.stack([x, t], 1), u


def _problem(case, *sets):
    return build_problem(load(case, list(sets)))


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_every_observation_reaches_exactly_one_expert(tmp_path, ranks):
    from ddpinn.data.observations import read_observations
    from ddpinn.decomposition.partition import assign_owners

    pts, u = _heat_csv(tmp_path / "obs.csv")
    problem = _problem(HEAT, f'data.0.file="{tmp_path / "obs.csv"}"')
    owner = assign_owners(problem.decomposition, ranks, problem.work)
    got, counts = [], np.zeros(problem.decomposition.n_subdomains, dtype=np.int64)
    for rank in range(ranks):
        obs = read_observations(problem, np.flatnonzero(owner == rank), SerialComm(), seed=1)
        counts += obs.counts
        for sid, p in obs.points.items():
            got.append(np.concatenate([p, obs.target[sid][:, :1]], axis=1))
            # each expert's data term is a mean, in units of the noise (0.01)
            assert np.allclose(obs.weight[sid][:, 0], 1.0 / 0.01 ** 2 / len(p))
    got = np.concatenate(got)
    want = np.concatenate([pts, u[:, None]], axis=1)
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    assert len(got) == len(want) == counts.sum()
    assert np.array_equal(order(got), order(want))


def test_observation_rows_join_the_batch(tmp_path):
    from ddpinn.data.observations import append_observations, read_observations
    from ddpinn.training.points import build_points

    _heat_csv(tmp_path / "obs.csv")
    problem = _problem(HEAT, f'data.0.file="{tmp_path / "obs.csv"}"')
    sids = np.arange(problem.decomposition.n_subdomains)
    obs = read_observations(problem, sids, SerialComm(), seed=1)
    cfg = problem.cfg
    batch = build_points(problem.decomposition, sids, problem.pde, cfg.points, 0,
                         problem.pde.params, problem.time_axis)
    grown = append_observations(batch, obs, sids)
    n = batch.x.shape[1]
    assert grown.x.shape[1] == n + obs.rows
    assert torch.equal(grown.x[:, :n], batch.x) and torch.equal(grown.bc_w[:, :n], batch.bc_w)
    for e, sid in enumerate(sids):
        k = obs.counts[sid]
        assert torch.allclose(grown.x[e, n:n + k], torch.as_tensor(obs.points[sid]))
        assert float(grown.data_w[e, n + k:].abs().sum()) == 0.0
        # the targets are the exact solution (the file was written from it)
        exact = problem.pde.exact(grown.x[e, n:n + k], problem.pde.params)
        assert torch.allclose(grown.data_target[e, n:n + k], exact, atol=1e-12)


def test_boundary_values_from_a_file_match_the_closed_form():
    from ddpinn.boundary.values import DataValue

    problem = _problem(KOVASZNAY)
    pde = problem.pde
    rng = np.random.default_rng(0)
    for cond in problem.boundary_conditions:
        for name, value in cond.values.items():
            assert isinstance(value, DataValue)
            for tag in cond.tags:
                pts = _edge(tag, rng)
                exact = pde.exact(torch.as_tensor(pts), pde.params).numpy()
                got = value.evaluate(pts, pde.params)
                err = np.abs(got - exact[:, pde.outputs.index(name)]).max()
                assert err < 3e-4, (tag, name, err)  # linear interpolation, h = 0.005


def _edge(tag, rng, n=300):
    """Points on a named face of Kovasznay's box [-0.5, 1] x [-0.5, 1.5]."""
    lo, hi = np.array([-0.5, -0.5]), np.array([1.0, 1.5])
    axis = "xy".index(tag[0])
    pts = lo + rng.random((n, 2)) * (hi - lo)
    pts[:, axis] = lo[axis] if tag.endswith("lower") else hi[axis]
    return pts


def test_a_reference_file_is_the_test_grid(tmp_path):
    from ddpinn.training.evaluate import make_test_grid

    pts, u = _heat_csv(tmp_path / "obs.csv", on_edges=False)
    text = HEAT.read_text().replace('use = "observations"\nnoise = 0.01', 'use = "reference"')
    assert 'use = "reference"' in text
    case = tmp_path / "case.toml"
    case.write_text(text.replace("heat1d_observations.csv", str(tmp_path / "obs.csv")))
    problem = _problem(case)
    grid = make_test_grid(problem)
    assert grid.scattered is not None and np.allclose(grid.scattered, pts)
    assert np.allclose(grid.truth[:, 0], u)



def _heat(x, t):
    return np.exp(-0.1 * math.pi ** 2 * t) * np.sin(math.pi * x)


def _reference_case(tmp_path, file):
    text = HEAT.read_text().replace('use = "observations"\nnoise = 0.01', 'use = "reference"')
    case = tmp_path / "case.toml"
    case.write_text(text.replace("heat1d_observations.csv", str(file)))
    return case


def test_a_reference_grid_beyond_the_domain_is_scored_inside_it(tmp_path):
    """A reference grid over x in [-0.5, 1.5], t in [0, 2] (a DNS around the case's domain
    [0, 1] x [0, 1]): the test grid is its nodes inside the domain, edges included."""
    from ddpinn.training.evaluate import make_test_grid
    from tests.unit.test_data_files import write_grid

    x, t = np.linspace(-0.5, 1.5, 41), np.linspace(0.0, 2.0, 21)
    path = write_grid(tmp_path / "ref.nc", {"t": t, "x": x},
                      {"u": _heat(x[None, :], t[:, None])})
    grid = make_test_grid(_problem(_reference_case(tmp_path, path)))
    assert np.allclose(grid.axes[0], x[(x >= 0) & (x <= 1)])   # 21 nodes, 0 and 1 included
    assert np.allclose(grid.axes[1], t[t <= 1]) and len(grid.axes[1]) == 11
    assert grid.points.shape == (21 * 11, 2)
    assert np.allclose(grid.truth[:, 0], _heat(grid.points[:, 0], grid.points[:, 1]))


def test_reference_rows_beyond_the_domain_are_left_out(tmp_path):
    from ddpinn.training.evaluate import make_test_grid

    rng = np.random.default_rng(3)
    x, t = rng.uniform(-1, 2, 400), rng.uniform(-1, 2, 400)
    np.savetxt(tmp_path / "ref.csv", np.stack([x, t, _heat(x, t)], 1), delimiter=",",
               header="x,t,u", comments="")
    grid = make_test_grid(_problem(_reference_case(tmp_path, tmp_path / "ref.csv")))
    inside = (x >= 0) & (x <= 1) & (t >= 0) & (t <= 1)
    assert inside.sum() > 20
    assert np.allclose(grid.scattered, np.stack([x, t], 1)[inside])
    assert np.allclose(grid.truth[:, 0], _heat(x, t)[inside])


@pytest.mark.parametrize("where", ["beside", "between nodes"])
def test_a_reference_without_a_point_in_the_domain_is_refused(tmp_path, where):
    from tests.unit.test_data_files import write_grid

    # beside: x in [1.5, 2.5]; between nodes: its x nodes -1 and 2 straddle [0, 1]
    x = np.linspace(1.5, 2.5, 5) if where == "beside" else np.array([-1.0, 2.0])
    t = np.linspace(0.0, 1.0, 3)
    path = write_grid(tmp_path / "ref.nc", {"t": t, "x": x},
                      {"u": _heat(x[None, :], t[:, None])})
    with pytest.raises(ConfigError, match=r"field 'data\.0\.file'.*has no point inside the "
                                          r"domain \(x in \[0, 1\], t in \[0, 1\]\)"):
        _problem(_reference_case(tmp_path, path))


BAD = {
    "no such file": ('data.0.file="missing.csv"', "data.0.file"),
    "unknown use": ('data.0.use="measurements"', "data.0.use"),
    "unknown output": ('data.0.fields={q = "u"}', "data.0.fields"),
    "fraction above 1": ("data.0.fraction=1.5", "data.0.fraction"),
    "replicas": ("parallel.replicas=2", "parallel.replicas"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_data_tables_name_the_field(name):
    override, field = BAD[name]
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _problem(HEAT, override)


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,t,q\n0.1,0.2,0.3\n")
    with pytest.raises(ConfigError, match="bad.csv"):
        _problem(HEAT, f'data.0.file="{bad}"')
    part = tmp_path / "part.csv"  # boundary data that covers only x <= 0.5
    part.write_text("x,y,u,v,p\n-0.5,-0.5,0,0,0\n0.5,1.5,0,0,0\n0.5,-0.5,0,0,0\n")
    with pytest.raises(ConfigError, match="covers"):
        _problem(KOVASZNAY, f'data.0.file="{part}"')


SUBVOLUME = ROOT / "cases" / "tgv3d_re1600_subvolume.toml"


def test_each_rank_reads_only_its_part_of_a_grid_file(case_data):
    """8 experts on 4 ranks: what a rank reads of the gridded observations and boundary data
    (counted by the reader) is a fraction of the file, and the parts add up to the file."""
    from ddpinn.data.observations import read_observations
    from ddpinn.decomposition.partition import assign_owners

    problem = _problem(SUBVOLUME, "data.2.fraction=0.1")
    d = problem.decomposition
    samples, walls = problem.data["samples"], problem.data["dns"]
    whole = samples.source.estimate_bytes(*samples.source.bounds())
    owner = assign_owners(d, 4, problem.work)
    counts = np.zeros(d.n_subdomains, dtype=np.int64)
    for rank in range(4):
        sids = np.flatnonzero(owner == rank)
        before = samples.source.bytes_read
        obs = read_observations(problem, sids, SerialComm(), seed=0)
        counts += obs.counts
        read = samples.source.bytes_read - before
        assert 0 < read < 0.6 * whole, (rank, read, whole)
        region = walls.nbytes_for(d.lower[sids].min(0), d.upper[sids].max(0))
        assert region < 0.6 * walls.source.estimate_bytes(*walls.source.bounds())
    # a tenth of the grid's nodes, each node given to one expert (rounding: 1/2 per expert)
    block = samples.source.read_box(*samples.source.bounds())
    nodes = int(np.prod(block.values.shape[:-1]))
    assert counts.min() > 0 and abs(counts.sum() - 0.1 * nodes) <= 0.5 * d.n_subdomains


def test_info_prints_the_data_each_rank_holds(case_data):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ddpinn.cli", "info", str(SUBVOLUME),
                           "--ranks", "4"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "per rank; by rank" in ln]
    assert [ln.split()[0] for ln in lines] == ["dns", "reference", "samples"]
    assert "(boundary, grid, linear, tgv1600_sub.nc)" in lines[0]  # how it is interpolated
    assert all(len(ln.split("by rank:")[1].split()) == 4 for ln in lines)


@pytest.mark.parametrize("early_send", [False, True])
def test_observation_rows_are_evaluated_by_value_only(tmp_path, monkeypatch, early_send):
    """Observation rows go through a plain forward pass: the derivative engine sees only the
    other rows, and the loss equals the one with every row differentiated."""
    import dataclasses

    from ddpinn.training import loss as loss_module
    from ddpinn.training.solver import Solver

    _heat_csv(tmp_path / "obs.csv")
    problem = _problem(HEAT, f'data.0.file="{tmp_path / "obs.csv"}"', "case.dtype=float64",
                       "network.width=8", "network.depth=2", "points.interior=40",
                       f"parallel.early_send={str(early_send).lower()}")
    solver = Solver(problem, SerialComm())
    ctx = solver.ctx
    batch = ctx.batch
    assert batch.value_rows > 0
    seen = []
    make = loss_module.make_fields

    def recording(model, x, *args, **kwargs):
        seen.append(x.shape[1])
        return make(model, x, *args, **kwargs)

    monkeypatch.setattr(loss_module, "make_fields", recording)
    params = {**ctx.pde.params, **solver.experts.shared_values(leaves=True)}
    fast = loss_module.local_loss(ctx, solver.model, params)
    assert sum(seen) == batch.x.shape[1] - batch.value_rows
    seen.clear()
    full_ctx = dataclasses.replace(ctx, batch=dataclasses.replace(batch, value_rows=0))
    full = loss_module.local_loss(full_ctx, solver.model, params)
    assert sum(seen) == batch.x.shape[1]
    assert float(fast.metrics["data"].sum()) > 0
    for name in ("data", "residual", "boundary", "loss"):
        assert torch.allclose(fast.metrics[name], full.metrics[name], rtol=1e-12, atol=0)

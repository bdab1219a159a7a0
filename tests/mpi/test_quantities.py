"""Quantities of interest are collective: a force on a wall, probes in different subdomains
and their difference are the same on 1, 2 and 4 ranks, in the metrics rows and in
errors.json and solution.nc."""
from __future__ import annotations

import json

import netCDF4
import numpy as np
import pytest

from .conftest import ROOT, check, metric_rows, run_case

CASE = ROOT / "cases" / "kovasznay.toml"
SETS = ("decomposition.grid=[2, 2]", 'case.dtype="float64"', "network.width=8",
        "network.depth=2", "points.interior=64", "points.boundary=16", "points.interface=8",
        'stages=[{optimizer="adam", steps=6, lr=1e-3}]', "output.eval_every=3",
        "output.checkpoint_every=0", "output.grid=[9, 9]",
        'output.forces=[{tag="y_lower", name="wall", scale=2.0, points=300}]',
        "output.probes={a = [-0.3, 0.0], b = [0.6, 1.2]}",
        'output.probe_differences={dp = ["p", "a", "b"]}')


def _quantities(run_dir) -> tuple:
    rows = {r["step"]: {k: v for k, v in r.items() if k.startswith("qoi_")}
            for r in metric_rows(run_dir)}
    final = json.loads((run_dir / "errors.json").read_text())["quantities"]
    with netCDF4.Dataset(run_dir / "solution.nc") as ds:
        attrs = {k[4:]: float(ds.getncattr(k)) for k in ds.ncattrs() if k.startswith("qoi_")}
    return rows, final, attrs


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    out = tmp_path_factory.mktemp("qoi1") / "run"
    check(run_case(1, CASE, out, *SETS)[0])
    return _quantities(out)


def test_quantities_are_logged_and_written(one_rank):
    rows, final, attrs = one_rank
    assert sorted(s for s, r in rows.items() if r) == [0, 3]
    keys = ["wall_drag", "wall_lift", "a_u", "a_v", "a_p", "b_u", "b_v", "b_p", "dp"]
    assert list(final) == keys and list(rows[3]) == [f"qoi_{k}" for k in keys]
    assert attrs == pytest.approx(final, rel=1e-15)
    assert final["dp"] == pytest.approx(final["a_p"] - final["b_p"], rel=1e-12)
    assert all(np.isfinite(v) for v in final.values())


@pytest.mark.parametrize("ranks", [2, 4])
def test_same_quantities_on_any_rank_count(one_rank, tmp_path, ranks):
    out = tmp_path / "run"
    check(run_case(ranks, CASE, out, *SETS)[0])
    rows, final, _ = _quantities(out)
    ref_rows, ref_final, _ = one_rank
    assert final == pytest.approx(ref_final, rel=1e-10, abs=1e-13)
    for step in (0, 3):
        assert rows[step] == pytest.approx(ref_rows[step], rel=1e-10, abs=1e-13)

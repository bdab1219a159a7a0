"""Every shipped case runs a few steps on 2 ranks (1 for a deck of one expert) and writes
readable outputs (one rank and equality across rank counts are the business of tests/mpi)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import netCDF4
import pytest

from ddpinn.io.config import tomllib
from ddpinn.pdes import get_pde_class

from tests.helpers import ROOT, check, run_case

CASES = sorted((ROOT / "cases").glob("*.toml"))
RANKS = 2  # fewer where a deck has fewer subdomains (a rank must hold an expert)
FEW_STEPS = ("stages.0.steps=2", "stages.1.steps=1", "points.interior=64",
             "points.boundary=8", "points.interface=8", "output.eval_every=1",
             "output.grid=[]", "output.checkpoint_every=3", "output.reference_n=16")


def few_steps(case: Path) -> tuple:
    """FEW_STEPS with one step for every stage after the second, and the steps in all."""
    n_stages = len(tomllib.loads(case.read_text()).get("stages", []))
    extra = tuple(f"stages.{i}.steps=1" for i in range(2, n_stages))
    return FEW_STEPS + extra, 3 + len(extra)


def ranks_for(case: Path) -> int:
    grid = tomllib.loads(case.read_text()).get("decomposition", {}).get("grid", [1])
    return min(RANKS, math.prod(grid))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case_runs(tmp_path, case):
    out = tmp_path / "run"
    overrides, n_steps = few_steps(case)
    ranks = ranks_for(case)
    proc, _ = run_case(ranks, case, out, *overrides, timeout=300)
    check(proc)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(n_steps))
    with netCDF4.Dataset(out / "solution.nc") as ds:
        assert ds.Conventions.startswith("CF-")
        assert ds.n_ranks == ranks
        for name in ds.pde_outputs.split(","):
            assert name.strip() in ds.variables
    assert (out / "config.toml").exists() and (out / "decomposition.json").exists()
    assert list((out / "checkpoints").glob("ckpt_*.pt"))
    if get_pde_class(tomllib.loads(case.read_text())["pde"]["name"]).energy_diagnostics:
        with netCDF4.Dataset(out / "diagnostics.nc") as ds:
            assert len(ds.variables["energy"][:]) == len(ds.variables["t"][:]) == 17
            assert ds.variables["reference_energy"][0] == pytest.approx(0.125, rel=1e-12)
        assert "l2_velocity" in json.loads((out / "errors.json").read_text())


def test_info_and_plot_commands(tmp_path):
    case = ROOT / "cases" / "beltrami3d.toml"
    info = subprocess.run([sys.executable, "-m", "ddpinn.cli", "info", str(case), "--ranks", "4"],
                          capture_output=True, text=True, cwd=ROOT)
    check(info)
    assert "8 subdomains" in info.stdout and "12 interfaces" in info.stdout
    assert len([ln for ln in info.stdout.splitlines() if ln.split()[:1] in (["0"], ["1"], ["2"], ["3"])]) == 4
    too_many = subprocess.run([sys.executable, "-m", "ddpinn.cli", "info", str(case), "--ranks", "9"],
                              capture_output=True, text=True, cwd=ROOT)
    assert too_many.returncode != 0 and "at most 8" in too_many.stderr
    out = tmp_path / "run"
    check(run_case(2, ROOT / "cases" / "poisson2d.toml", out, *FEW_STEPS)[0])
    plot = subprocess.run([sys.executable, "-m", "ddpinn.cli", "plot", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    check(plot)
    pngs = {Path(p).name for p in plot.stdout.split()}
    assert {"solution_u.png", "error_u.png", "decomposition.png", "loss.png"} <= pngs


def test_heat_run_writes_vtk_files_and_probe_time_series(tmp_path):
    """2 ranks, a 1D+t case: output.vtk gives solution.pvd and one file per time; a probe
    without t is a time series in probes.nc whose last value is the quantity in errors.json."""
    from ddpinn.io.probes import read_probe_series
    from ddpinn.io.vtk import vtk_available

    if not vtk_available():
        pytest.skip("the vtk package is not installed (pip install 'ddpinn[vtk]')")
    out = tmp_path / "run"
    check(run_case(2, ROOT / "cases" / "heat1d.toml", out, *FEW_STEPS, "output.grid=[11, 5]",
                   "output.vtk=true", "output.probes={mid = [0.5], at = [0.25, 1.0]}")[0])
    assert sorted(p.name for p in (out / "vtk").iterdir()) == \
        [f"solution_{k:04d}.vti" for k in range(5)]
    assert (out / "solution.pvd").read_text().count("<DataSet ") == 5
    series = read_probe_series(out / "probes.nc")
    assert series["names"] == ["mid"] and series["space"]["x"].tolist() == [0.5]
    assert series["times"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    quantities = json.loads((out / "errors.json").read_text())["quantities"]
    assert series["values"]["u"].shape == (1, 5)
    assert series["values"]["u"][0, -1] == pytest.approx(quantities["mid_u"], rel=1e-12)
    assert set(quantities) == {"mid_u", "at_u"}

"""The example plugin outside the package (examples/reaction_diffusion.py) under mpiexec -n 2:
per-equation weights, its own CSV reference (errors in errors.json), its import name in the
log and in solution.nc, progress lines that never pass off old errors as new, and a bad
reference file: exit 2, one message, nothing written."""
from __future__ import annotations

import json
import re

import netCDF4
import numpy as np

from .conftest import ROOT, check, run_case, run_mpi

CASE = ROOT / "examples" / "reaction_diffusion.toml"
NAME = "examples.reaction_diffusion:ReactionDiffusion"
FAST = ("stages.0.steps=12", "stages.1.steps=2", "points.interior=60", "points.boundary=12",
        "points.interface=8", "network.width=8")


def test_example_plugin_end_to_end_with_honest_progress(tmp_path):
    out = tmp_path / "run"
    proc, _ = run_case(2, CASE, out, *FAST, "output.log_every=1", "output.eval_every=5",
                       "loss.residual={diffusion_u = 1.0, reaction_v = 10.0}",
                       "output.checkpoint_every=7", quiet=False, timeout=240)
    check(proc)
    errors = json.loads((out / "errors.json").read_text())
    assert set(errors) == {"l2_u", "l2_v"} and all(v > 0 for v in errors.values())
    # ddpinn eval at the reference's scattered points, in the run's precision: its errors
    # are those the run wrote, and its values reproduce them
    reference = ROOT / "examples" / "reaction_diffusion_reference.csv"
    evaluated = tmp_path / "eval.csv"
    proc_eval, _ = run_mpi(2, ["-m", "ddpinn.cli", "eval", out, "--points", reference,
                               "--out", evaluated, "--dtype", "float32", "--quiet"])
    check(proc_eval)
    report = json.loads(proc_eval.stdout.strip().splitlines()[-1])
    assert report["points"] == 400 and report["step"] == 14
    for name in ("u", "v"):
        assert abs(report["errors"][f"l2_{name}"] - errors[f"l2_{name}"]) <= \
            1e-6 * errors[f"l2_{name}"]
    got = np.genfromtxt(evaluated, delimiter=",", names=True)
    ref = np.genfromtxt(reference, delimiter=",", names=True)
    assert np.array_equal(got["x"], ref["x"]) and np.array_equal(got["y"], ref["y"])
    for name in ("u", "v"):
        l2 = np.linalg.norm(got[name] - ref[name]) / np.linalg.norm(ref[name])
        assert abs(l2 - errors[f"l2_{name}"]) <= 1e-5 * errors[f"l2_{name}"]
    with netCDF4.Dataset(out / "solution.nc") as ds:
        assert ds.getncattr("pde") == NAME
        assert ds.getncattr("reference").endswith("reaction_diffusion_reference.csv")
        assert "u" in ds.variables and "u_error" not in ds.variables  # scattered reference
    assert f"PDE {NAME}," in proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(14))
    assert [r["step"] for r in rows if "l2_u" in r] == [0, 5, 10]
    lines = [ln for ln in proc.stderr.splitlines() if re.search(r" step \d+/14 ", ln)]
    assert len(lines) == 14
    for line in lines:
        step = int(re.search(r" step (\d+)/", line).group(1))
        shown = re.search(r"l2_u (\S+)", line)
        assert shown, line
        value = float(shown.group(1))
        marker = re.search(r"@step (\d+)", line)
        computed_at = step - step % 5
        if step % 5 == 0:
            assert marker is None, line  # fresh: computed at this very step
        else:
            assert marker and int(marker.group(1)) == computed_at, line
        assert value == float(f"{rows[computed_at]['l2_u']:.3e}"), line


def test_bad_reference_file_exit_2_one_message(tmp_path):
    (tmp_path / "badref.py").write_text(
        "from examples.reaction_diffusion import ReactionDiffusion\n\n\n"
        "class NoFile(ReactionDiffusion):\n    reference = 'no_such_reference.csv'\n")
    out = tmp_path / "run"
    proc, _ = run_case(2, CASE, out, *FAST, 'pde.name="badref:NoFile"', timeout=120,
                       env={"PYTHONPATH": f"{ROOT}:{tmp_path}", "DDPINN_DATA": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(lines) == 1, proc.stderr
    assert "reference 'no_such_reference.csv' of PDE 'badref:NoFile' not found" in lines[0]
    assert "Traceback" not in proc.stderr and "KeyError" not in proc.stderr
    assert not out.exists()  # refused before the run directory is made


def test_wrong_number_of_weights_exit_2(tmp_path):
    out = tmp_path / "run"
    proc, _ = run_case(2, CASE, out, *FAST, "loss.residual=[1.0, 2.0, 3.0]", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(lines) == 1 and "field 'loss.residual'" in lines[0] and \
        "diffusion_u, reaction_v" in lines[0], proc.stderr
    assert not out.exists()

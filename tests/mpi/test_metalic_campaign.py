"""METALIC end to end: a tiny campaign whose rounds train the heat case on 2 ranks under
mpiexec; a case that takes its conditions from it; workers killed or signalled mid-round."""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ddpinn.io.netcdf import read_solution

from .conftest import ROOT, check, mpiexec, run_case

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

pytest.importorskip("sklearn")

HEAT = ROOT / "cases" / "heat1d.toml"
TINY = ["network.width=8", "network.depth=2", "points.interior=60", "points.boundary=12",
        "points.interface=8", "stages.0.steps=12", "stages.1.steps=2", "stages.1.max_evals=5",
        "output.grid=[21, 21]", "output.log_every=0", "output.eval_every=0"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}


def campaign_file(tmp_path, rounds=3, launcher=None, extra_run=""):
    path = tmp_path / "heat_campaign.toml"
    launcher = launcher or f"{mpiexec()} -n {{ranks}}"
    path.write_text(textwrap.dedent(f"""
        [campaign]
        name = "heat_tiny"
        case = "{HEAT}"
        dir = "{tmp_path / 'campaign'}"
        rounds = {rounds}
        warmup = 2
        restarts = 0
        [contexts.kappa]
        low = 0.02
        high = 0.5
        scale = "log"
        [arms]
        list = [["average_solution", "residual_continuity"],
                ["solution_continuity", "flux_continuity"],
                ["solution_continuity", "residual_continuity", "flux_continuity"]]
        [reward]
        source = "errors"
        key = "l2_u"
        [run]
        ranks = 2
        launcher = "{launcher}"
        heartbeat = 0.5
        timeout = 300.0
        set = {json.dumps(TINY)}
        {extra_run}
        """))
    return path


def metalic(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "ddpinn.cli", "metalic", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=ROOT, **kw)


def test_tiny_campaign_on_two_ranks_and_a_case_using_it(tmp_path):
    camp = campaign_file(tmp_path)
    proc = metalic("run", camp)
    check(proc)
    state = json.loads((tmp_path / "campaign" / "state.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["done"] * 3
    assert [r["how"] for r in state["rounds"]] == ["warmup", "warmup", "ucb"]
    for r in state["rounds"]:
        run = Path(r["run_dir"])
        err = json.loads((run / "errors.json").read_text())["l2_u"]
        assert r["rewards"][0] == pytest.approx(min(8.0, max(0.0, -math.log10(err))))
        cfg = tomllib.loads((run / "config.toml").read_text())
        assert cfg["pde"]["params"]["kappa"] == pytest.approx(r["context"]["kappa"])
        assert cfg["interface"]["conditions"] == r["conditions"][0]
        assert read_solution(run / "solution.nc")["attrs"]["n_ranks"] == 2
    assert state["models"]["n"] == 3

    proc = metalic("report", camp)
    check(proc)
    assert (tmp_path / "campaign" / "report" / "arms_vs_context.png").is_file()
    proc = metalic("suggest", camp, "--context", "kappa=0.1", "--json")
    check(proc)
    best = json.loads(proc.stdout)["stages"][0]["conditions"]

    out = tmp_path / "using"
    proc, _ = run_case(2, HEAT, out, *TINY, "pde.params.kappa=0.1",
                       f'interface.conditions="metalic:{camp}"')
    check(proc)
    attrs = read_solution(out / "solution.nc")["attrs"]
    assert attrs["interface_conditions"] == ", ".join(best)


FAKE = r'''
import json, os, signal, sys, time
sets = dict(a.split("=", 1) for a in sys.argv[sys.argv.index("--set") + 1::2])
out = json.loads(sets["output.dir"])
os.makedirs(out, exist_ok=True)
signal.signal(signal.SIGUSR1, lambda *a: sys.exit(85))  # like ddpinn: checkpoint, exit 85
slow = os.environ.get("FAKE_SLOW_DIR")
if slow and out.endswith(slow):
    open(os.path.join(out, "started"), "w").close()
    time.sleep(120)
with open(os.path.join(out, "errors.json"), "w") as fh:
    json.dump({"l2_u": 0.01 * float(sets["pde.params.kappa"])}, fh)
'''


def _wait_for(path: Path, timeout=120):
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


def _fake_campaign(tmp_path, rounds=3):
    fake = tmp_path / "fake_mpiexec.py"
    fake.write_text(FAKE)
    return campaign_file(tmp_path, rounds=rounds,
                         launcher=f"{shlex.quote(sys.executable)} {fake}",
                         extra_run="lease = 3600.0")


def test_worker_killed_mid_round_campaign_resumes(tmp_path):
    camp = _fake_campaign(tmp_path)
    env = {**_env(), "FAKE_SLOW_DIR": "round_0001"}
    worker = subprocess.Popen([sys.executable, "-m", "ddpinn.cli", "metalic", "run", str(camp)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(tmp_path / "campaign" / "runs" / "round_0001" / "started")
        worker.kill()  # SIGKILL: no clean-up at all
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    state = json.loads((tmp_path / "campaign" / "state.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["done", "running"]
    first = state["rounds"][0]
    proc = metalic("run", camp)  # a new worker resumes (lease is long: the dead pid tells)
    check(proc)
    state = json.loads((tmp_path / "campaign" / "state.json").read_text())
    assert [r["status"] for r in state["rounds"]] == ["done"] * 3
    assert state["rounds"][0]["rewards"] == first["rewards"]
    assert state["rounds"][1]["attempts"] == 2
    assert any("stale claim" in line for line in state["rounds"][1]["log"])


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 85), (signal.SIGUSR1, 85),
                                      (signal.SIGINT, 130)])
def test_signalled_worker_hands_its_round_back(tmp_path, sig, code):
    camp = _fake_campaign(tmp_path, rounds=2)
    env = {**_env(), "FAKE_SLOW_DIR": "round_0000"}
    worker = subprocess.Popen([sys.executable, "-m", "ddpinn.cli", "metalic", "work", str(camp)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        _wait_for(tmp_path / "campaign" / "runs" / "round_0000" / "started")
        worker.send_signal(sig)
        out, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == code, out
    assert "handed back" in out
    r = json.loads((tmp_path / "campaign" / "state.json").read_text())["rounds"][0]
    assert r["status"] == "pending" and r["attempts"] == 0 and r["claim"] is None
    proc = metalic("work", camp)  # the next worker runs it
    check(proc)
    r = json.loads((tmp_path / "campaign" / "state.json").read_text())["rounds"][0]
    assert r["status"] == "done" and r["attempts"] == 1

"""METALIC campaigns without MPI: campaign files, the locked state file (concurrent
recording, stale claims), rewards, Cole-Hopf references, the CLI on a synthetic campaign,
``conditions = "metalic:PATH"``, and a round run through a fake launcher."""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ddpinn.interface.conditions import ConditionSet

pytest.importorskip("sklearn")

from ddpinn.cli import main  # noqa: E402
from ddpinn.io.config import ConfigError, apply_overrides, load  # noqa: E402
from ddpinn.metalic import runner  # noqa: E402
from ddpinn.metalic import state as st  # noqa: E402
from ddpinn.metalic.campaign import CampaignError, load_campaign, reward_from_value  # noqa: E402
from ddpinn.references.burgers import burgers_cole_hopf  # noqa: E402
from ddpinn.metalic.reward import run_result  # noqa: E402
from ddpinn.problem import build_problem  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "cases"
CAMPAIGNS = sorted((ROOT / "campaigns").glob("*.toml"))

SYNTHETIC = """
[campaign]
name = "syn"
rounds = {rounds}
warmup = 4
refit_every = 3
restarts = 0

[contexts.z]
low = 0.0
high = 1.0

[arms]
candidates = ["solution_continuity", "average_solution", "residual_continuity", "flux_continuity"]
list = ["1000", "1100", "1010", "1110", "0110", "1001"]

[reward]
source = "synthetic"
"""

# A stand-in for `mpiexec -n R`: it ignores the ddpinn command it is given and writes what a
# finished run writes (errors.json, metrics.jsonl), with an error that depends on kappa and
# on how many conditions the arm has. FAKE_SLEEP makes it slow (to be interrupted).
FAKE_LAUNCHER = r'''
import json, os, signal, sys, time
try:
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib
sets = dict(a.split("=", 1) for a in sys.argv[sys.argv.index("--set") + 1::2])
val = lambda k: tomllib.loads("v = " + sets[k])["v"]
out = val("output.dir")
os.makedirs(out, exist_ok=True)
signal.signal(signal.SIGUSR1, lambda *a: sys.exit(85))
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
err = val("pde.params.kappa") * 10.0 ** -len(val("interface.conditions"))
with open(os.path.join(out, "metrics.jsonl"), "w") as fh:
    fh.write(json.dumps({"step": 0, "stage": 0, "residual": 0.5}) + "\n")
    fh.write(json.dumps({"step": 1, "stage": 0, "residual": err}) + "\n")
with open(os.path.join(out, "errors.json"), "w") as fh:
    json.dump({"l2_u": err}, fh)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
'''


def synthetic_campaign(tmp_path, rounds=6, name="syn.toml"):
    path = tmp_path / name
    path.write_text(SYNTHETIC.format(rounds=rounds))
    return load_campaign(path, tmp_path / "state")


def heat_campaign(tmp_path, extra="", rounds=3, launcher=None):
    fake = tmp_path / "fake_launcher.py"
    fake.write_text(FAKE_LAUNCHER)
    path = tmp_path / "heat.toml"
    path.write_text(textwrap.dedent(f"""
        [campaign]
        name = "heat"
        case = "{CASES / 'heat1d.toml'}"
        dir = "{tmp_path / 'camp'}"
        rounds = {rounds}
        warmup = 2
        restarts = 0
        [contexts.kappa]
        low = 0.01
        high = 1.0
        scale = "log"
        [arms]
        candidates = ["average_solution", "solution_continuity", "residual_continuity"]
        max_size = 2
        [reward]
        source = "errors"
        key = "l2_u"
        [run]
        ranks = 2
        launcher = "{launcher or (shlex.quote(sys.executable) + ' ' + str(fake))}"
        heartbeat = 0.2
        set = ["stages.0.steps=5", "stages.1.steps=0"]
        """) + extra)
    return load_campaign(path)


def test_separate_space_and_time_arms_drive_the_case(tmp_path):
    c = heat_campaign(tmp_path, extra="")
    path = tmp_path / "heat.toml"
    path.write_text(path.read_text().replace("max_size = 2", "max_size = 1\nseparate = true"))
    c = load_campaign(path)
    assert len(c.arms) == 9 and c.arms.kinds == ("space", "time")
    a = c.arms.index({"space": ["solution_continuity"], "time": ["residual_continuity"]})
    cfg = load(c.case, c.overrides({"kappa": 0.1}, [a], tmp_path / "r"))
    problem = build_problem(cfg)
    assert problem.conditions.space == ("solution_continuity",)
    assert problem.conditions.time == ("residual_continuity",)
    steady = tmp_path / "steady.toml"
    steady.write_text(path.read_text().replace("heat1d.toml", "poisson2d.toml")
                      .replace("[contexts.kappa]", "[contexts.k]")
                      .replace("low = 0.01", "low = 1.0").replace("high = 1.0\n", "high = 2.0\n")
                      .replace('scale = "log"', 'scale = "linear"'))
    with pytest.raises(CampaignError, match="space interfaces only"):
        load_campaign(steady)


# -- campaign files ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", CAMPAIGNS, ids=[p.stem for p in CAMPAIGNS])
def test_shipped_campaigns_load_and_their_rounds_build(path, tmp_path):
    c = load_campaign(path, tmp_path)  # loads and builds the case with a round's overrides
    assert len(c.arms) >= 2 and len(c.contexts) >= 1
    if c.case is not None:
        ctx = c.contexts.values([0.9] * len(c.contexts))
        cfg = load(c.case, c.overrides(ctx, [len(c.arms) - 1], tmp_path / "r"))
        problem = build_problem(cfg)
        assert problem.conditions == ConditionSet.of(c.arms.conditions(len(c.arms) - 1))
        for name, v in ctx.items():
            assert problem.pde.params[name] == pytest.approx(v)
        assert cfg.output.dir == str(tmp_path / "r")


def test_round_overrides_are_toml(tmp_path):
    c = heat_campaign(tmp_path)
    data = apply_overrides({}, c.overrides({"kappa": 0.0123}, [c.arms.index(
        ["average_solution", "residual_continuity"])], tmp_path / 'a "b"'))
    assert data["pde"]["params"]["kappa"] == 0.0123
    assert data["interface"]["conditions"] == ["average_solution", "residual_continuity"]
    assert data["output"]["dir"] == str(tmp_path / 'a "b"')
    assert data["stages"] == {"0": {"steps": 5}, "1": {"steps": 0}}
    cmd = c.command({"kappa": 0.5}, [0], tmp_path / "r")
    assert cmd[:2] == [sys.executable, str(tmp_path / "fake_launcher.py")]
    assert cmd[cmd.index("run") + 1] == str(CASES / "heat1d.toml")


@pytest.mark.parametrize("edit,msg", [
    (("[campaign]", "[campaign]\npolicy = \"greedy\""), "campaign.policy"),
    (("[campaign]", "[campaign]\nroundz = 3"), "did you mean 'rounds'"),
    (("low = 0.01", "low = 0.0"), "must be > 0 for scale"),
    (("[contexts.kappa]", "[contexts.nu]"), "'pde.params.nu' is not a parameter of PDE 'heat'"),
    (("max_size = 2", "list = [[\"flux_continuity\"]]"), "not among"),
    (("source = \"errors\"", "source = \"oracle\""), "reward.source"),
    (("set = [\"stages.0.steps=5\"", "set = [\"stages.0.stepz=5\""), "stepz"),
])
def test_bad_campaign_one_clear_error(tmp_path, edit, msg):
    heat_campaign(tmp_path)
    path = tmp_path / "heat.toml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(CampaignError, match=msg):
        load_campaign(path)


def test_two_stage_training_campaign_sets_conditions_per_stage(tmp_path):
    """Two-stage campaigns drive training runs through ``stages.K.conditions``."""
    from ddpinn.io.config import load
    from ddpinn.problem import build_problem

    heat_campaign(tmp_path)
    path = tmp_path / "heat.toml"
    path.write_text(path.read_text().replace("[campaign]", "[campaign]\nstages = 2", 1))
    campaign = load_campaign(path)
    arms = [0, len(campaign.arms.masks) - 1]
    first, second = (campaign.arms.conditions(a) for a in arms)
    assert first != second
    sets = campaign.overrides({"kappa": 0.2}, arms, tmp_path / "run")
    per_stage = [s.split("=", 1)[0] for s in sets if ".conditions=" in s]
    assert per_stage == ["interface.conditions", "stages.0.conditions", "stages.1.conditions"]
    problem = build_problem(load(CASES / "heat1d.toml", sets))
    # The Adam stage trains with the first arm, the L-BFGS stage with the second.
    assert [c.as_config() for c in problem.stage_conditions] == [first, second]
    assert problem.conditions.as_config() == first


# -- the state file -------------------------------------------------------------------------
def _mp():
    """fork where there is one: the children start at once with everything imported (they
    run no torch code); spawn elsewhere."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _record_at_barrier(path, dir_, rid, token, barrier):
    campaign = load_campaign(path, dir_)
    barrier.wait()
    rnd = st.StateFile(campaign.state_path).read()["rounds"][rid]
    runner.record(campaign, rid, token, runner.synthetic_result(campaign, rnd))


def _work_at_barrier(path, dir_, barrier):
    campaign = load_campaign(path, dir_)
    barrier.wait()
    runner.work(campaign, echo=lambda m: None)


def test_two_processes_recording_at_once_both_recorded(tmp_path):
    campaign = synthetic_campaign(tmp_path, rounds=2)
    claims = [runner.claim_next(campaign) for _ in range(2)]
    ctx = _mp()
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_record_at_barrier,
                         args=(campaign.path, campaign.dir, r["id"], r["claim"]["token"], barrier))
             for r in claims]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rounds = st.StateFile(campaign.state_path).read()["rounds"]
    assert [r["status"] for r in rounds] == ["done", "done"]
    assert all(len(r["rewards"]) == 1 for r in rounds)


def test_concurrent_workers_claim_each_round_once(tmp_path):
    campaign = synthetic_campaign(tmp_path, rounds=10)
    ctx = _mp()
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_work_at_barrier, args=(campaign.path, campaign.dir, barrier))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    state = st.StateFile(campaign.state_path).read()
    assert [r["id"] for r in state["rounds"]] == list(range(10))
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in state["rounds"])
    workers = {r["log"][1].split("claimed by ")[1].split(" ")[0] for r in state["rounds"]}
    assert len(workers) == 2, workers  # both took part
    assert state["models"]["n"] == 10


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_round_of_a_killed_worker_is_rerun_and_recorded_rounds_kept(tmp_path):
    campaign = synthetic_campaign(tmp_path, rounds=4)
    runner.work(campaign, rounds=2, echo=lambda m: None)
    before = st.StateFile(campaign.state_path).read()
    # a worker claims round 2 and dies mid-round (its pid is gone)
    store = st.StateFile(campaign.state_path)
    with store.transaction() as state:
        who = st.claimant()
        who["pid"] = _dead_pid()
        killed = st.claim(campaign, state, who)
    assert killed["id"] == 2
    out = runner.work(campaign, echo=lambda m: None)  # the campaign is resumed
    after = store.read()
    assert out["done"] == 2 and len(after["rounds"]) == 4
    assert after["rounds"][2]["attempts"] == 2
    assert after["rounds"][2]["context"] == killed["context"]  # re-run, same context and arm
    assert after["rounds"][2]["arms"] == killed["arms"]
    assert any("stale claim" in line for line in after["rounds"][2]["log"])
    for r0, r1 in zip(before["rounds"][:2], after["rounds"][:2]):
        assert r1["rewards"] == r0["rewards"] and r1["status"] == "done"


def test_claims_go_stale_without_heartbeat_on_other_hosts(tmp_path):
    campaign = synthetic_campaign(tmp_path)
    now = time.time()
    alive = {"host": "elsewhere", "pid": 1, "heartbeat": now - 10}
    assert not st.is_stale(alive, lease=60, now=now)
    assert st.is_stale({**alive, "heartbeat": now - 120}, lease=60, now=now)
    assert st.is_stale({**st.claimant(), "pid": _dead_pid()}, lease=1e9)
    assert not st.is_stale(st.claimant(), lease=1e9)
    with pytest.raises(CampaignError, match="no campaign state"):
        with st.StateFile(campaign.state_path).transaction():
            pass


def test_failed_runs_are_retried_then_marked_failed(tmp_path):
    campaign = synthetic_campaign(tmp_path, rounds=1)
    r = runner.claim_next(campaign)
    fail = {"rewards": None, "exit": 1, "error": "boom"}
    assert runner.record(campaign, 0, r["claim"]["token"], fail) == "retry"
    r = runner.claim_next(campaign)
    assert r["id"] == 0 and r["attempts"] == 2
    assert runner.record(campaign, 0, r["claim"]["token"], fail) == "failed"
    assert runner.claim_next(campaign) is None  # budget spent


def test_state_refuses_a_changed_campaign(tmp_path):
    campaign = synthetic_campaign(tmp_path, rounds=2)
    runner.work(campaign, echo=lambda m: None)
    path = campaign.path
    path.write_text(path.read_text().replace('"1001"]', '"1001", "0011"]'))
    with pytest.raises(CampaignError, match="'arms' changed"):
        runner.claim_next(load_campaign(path, campaign.dir))


# -- rewards ---------------------------------------------------------------------------------
def test_reward_is_clipped_minus_log10():
    assert reward_from_value(1e-3, 8, 0) == pytest.approx(3.0)
    assert reward_from_value(1e-12, 8, 0) == 8.0
    assert reward_from_value(20.0, 8, 0) == 0.0
    assert reward_from_value(float("nan"), 8, 0) == 0.0


def test_run_results(tmp_path):
    c = heat_campaign(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    rnd = {"run_dir": str(run), "context": {"kappa": 0.1}}
    (run / "errors.json").write_text(json.dumps({"l2_u": 0.01}))
    assert run_result(c, rnd, 0)["rewards"] == [pytest.approx(2.0)]
    assert run_result(c, rnd, 3)["rewards"] == [0.0]  # diverged: the floor, a bad arm
    bad = run_result(c, rnd, 137, "killed\n")
    assert bad["rewards"] is None and "137" in bad["error"]
    c.reward.source, c.reward.key = "metric", "residual"
    (run / "metrics.jsonl").write_text('{"step": 0, "residual": 1.0}\n{"step": 1, "residual": 1e-4}\n')
    assert run_result(c, rnd, 0)["rewards"] == [pytest.approx(4.0)]
    c.reward.source, c.reward.key = "errors", "l2_v"
    assert "no 'l2_v'" in run_result(c, rnd, 0)["error"]


def test_reference_reward_against_cole_hopf(tmp_path):
    from ddpinn.io.netcdf import write_solution

    path = tmp_path / "b.toml"
    path.write_text(f"""
[campaign]
case = "{CASES / 'burgers1d.toml'}"
[contexts.nu]
low = 0.001
high = 0.05
scale = "log"
[arms]
list = [["average_solution"], ["solution_continuity"]]
[reward]
source = "reference"
reference = "burgers_cole_hopf"
""")
    c = load_campaign(path)
    x, t = np.linspace(-1, 1, 41), np.linspace(0, 1, 11)
    truth = burgers_cole_hopf(*np.meshgrid(x, t, indexing="ij"), 0.02)
    for scale, want in ((1.0, 8.0), (1.01, 2.0)):
        run = tmp_path / f"run{scale}"
        run.mkdir()
        write_solution(run / "solution.nc", ("x", "t"), (x, t), {"u": truth * scale})
        res = run_result(c, {"run_dir": str(run), "context": {"nu": 0.02}}, 0)
        assert res["rewards"][0] == pytest.approx(want, abs=1e-6)


def test_cole_hopf_solves_burgers():
    nu = 0.01 / math.pi
    x = np.array([-0.7, -0.3, 0.4, 0.8])
    t = np.array([0.2, 0.5, 0.7, 0.9])
    u = lambda xx, tt: burgers_cole_hopf(xx, tt, nu)  # noqa: E731
    h = 1e-4
    ut = (u(x, t + h) - u(x, t - h)) / (2 * h)
    ux = (u(x + h, t) - u(x - h, t)) / (2 * h)
    uxx = (u(x + h, t) - 2 * u(x, t) + u(x - h, t)) / h ** 2
    assert np.abs(ut + u(x, t) * ux - nu * uxx).max() < 1e-5
    xs = np.linspace(-1, 1, 9)
    assert np.allclose(u(xs, 0 * xs), -np.sin(np.pi * xs))
    assert np.abs(u(np.array([-1.0, 1.0]), np.array([0.6, 0.6]))).max() < 1e-12
    assert np.isfinite(burgers_cole_hopf(xs, 0 * xs + 1.0, 1e-4)).all()  # no overflow


def test_cole_hopf_matches_pinnacle_reference_data():
    from ddpinn.io import reference

    ref = reference.load("pinnacle_burgers1d.dat") if reference.find(
        "pinnacle_burgers1d.dat") else None
    if ref is None:
        pytest.skip("pinnacle_burgers1d.dat not found (set DDPINN_DATA)")
    xs, ts = np.meshgrid(*ref.axes, indexing="ij")
    u = burgers_cole_hopf(xs, ts, 0.01 / math.pi)
    v = ref.values[..., 0]
    # the COMSOL data (101 nodes) differ from the exact solution by about 1 %
    assert np.linalg.norm(u - v) / np.linalg.norm(v) < 0.02


# -- CLI on a synthetic campaign ----------------------------------------------------------------
def test_cli_synthetic_campaign_run_status_suggest_report(tmp_path, capsys):
    path = tmp_path / "syn.toml"
    path.write_text(SYNTHETIC.format(rounds=8))
    d = str(tmp_path / "state")
    assert main(["metalic", "run", str(path), "--dir", d, "--rounds", "5"]) == 0
    assert main(["metalic", "run", str(path), "--dir", d]) == 0  # resumes: 3 more
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert len(state["rounds"]) == 8 and st.counts(state)["done"] == 8
    capsys.readouterr()
    assert main(["metalic", "suggest", d, "--context", "z=0.5", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["stages"][0]["mask"] in ("1000", "1100", "1010", "1110", "0110", "1001")
    assert main(["metalic", "suggest", d, "--context", "y=0.5"]) == 2
    assert "z=VALUE" in capsys.readouterr().err
    assert main(["metalic", "report", str(path), "--dir", d]) == 0
    report = tmp_path / "state" / "report"
    for name in ("report.md", "rewards.png", "arms_vs_context.png", "posterior.png"):
        assert (report / name).stat().st_size > 0
    md = (report / "report.md").read_text()
    assert "| 7 | z=" in md and "Best interface conditions" in md
    assert main(["metalic", "next", str(path), "--dir", d]) == 0
    assert "nothing to claim" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[campaign]\nrounds = 0\n[contexts.z]\nlow = 0\nhigh = 1\n"
                   "[reward]\nsource = \"synthetic\"\n")
    assert main(["metalic", "run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "campaign.rounds" in err[0]


# -- a round through the launcher, next/record, and metalic:PATH in a case -----------------------
def test_round_through_launcher_and_metalic_conditions_in_a_case(tmp_path, capsys):
    c = heat_campaign(tmp_path, rounds=5)
    out = runner.work(c, rounds=4, echo=lambda m: None)
    assert out["done"] == 4
    state = st.StateFile(c.state_path).read()
    for r in state["rounds"]:
        run = Path(r["run_dir"])
        assert "--set" in (run / "command.txt").read_text()
        err = json.loads((run / "errors.json").read_text())["l2_u"]
        assert r["rewards"][0] == pytest.approx(-math.log10(err))
    # `next` prints the command of round 4; training it and `record` finish it
    capsys.readouterr()
    assert main(["metalic", "next", str(c.path), "--json"]) == 0
    claim = json.loads(capsys.readouterr().out)
    assert claim["round"] == 4
    assert subprocess.run(claim["command"]).returncode == 0
    assert main(["metalic", "record", str(c.path), "4", "--token", claim["token"]]) == 0
    assert st.counts(st.StateFile(c.state_path).read())["done"] == 5
    # a case that takes its conditions from the campaign
    want = json.loads(_suggest_json(c.dir, "kappa=0.05", capsys))["stages"][0]["conditions"]
    cfg = load(CASES / "heat1d.toml", [f'interface.conditions="metalic:{c.dir}"',
                                       "pde.params.kappa=0.05"])
    assert build_problem(cfg).conditions.as_config() == want
    cfg = load(CASES / "heat1d.toml", [f'interface.conditions="metalic:{c.path}"',
                                       "pde.params.kappa=0.05"])
    assert build_problem(cfg).conditions.as_config() == want
    for sets, msg in (([f'interface.conditions="metalic:{tmp_path / "nowhere"}"'], "no campaign state"),
                      (['interface.conditions="average_solution"'], "metalic:PATH")):
        with pytest.raises(ConfigError, match=msg):
            build_problem(load(CASES / "heat1d.toml", sets))
    poisson = load(CASES / "poisson2d.toml", [f'interface.conditions="metalic:{c.dir}"'])
    with pytest.raises(ConfigError, match="PDE 'heat'"):
        build_problem(poisson)


def _suggest_json(d, ctx, capsys):
    capsys.readouterr()
    assert main(["metalic", "suggest", str(d), "--context", ctx, "--json"]) == 0
    return capsys.readouterr().out


def test_launcher_failure_is_retried_then_failed(tmp_path, monkeypatch):
    c = heat_campaign(tmp_path, rounds=1)
    monkeypatch.setenv("FAKE_EXIT", "1")
    out = runner.work(c, echo=lambda m: None)
    assert out == {"done": 0, "failed": 1, "retry": 1, "ignored": 0}
    r = st.StateFile(c.state_path).read()["rounds"][0]
    assert r["status"] == "failed" and "status 1" in r["error"]


def test_slurm_template_is_valid_bash():
    sb = ROOT / "slurm" / "metalic_array.sbatch"
    assert subprocess.run(["bash", "-n", str(sb)]).returncode == 0
    assert "ddpinn.cli metalic work" in sb.read_text()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# -- held-out comparison ----------------------------------------------------------------------
def test_heldout_comparison_trains_every_arm_once_and_resumes(tmp_path, capsys):
    from ddpinn.metalic import heldout

    c = heat_campaign(tmp_path, rounds=4)
    # the fake run's error is kappa * 10**-(number of conditions): every pair beats every single
    assert main(["metalic", "heldout", str(c.path), "-k", "3"]) == 2  # no state yet
    assert "run the campaign first" in capsys.readouterr().err
    runner.work(c, echo=lambda m: None)
    assert main(["metalic", "heldout", str(c.path), "-k", "3", "--default",
                 "average_solution,flux_continuity"]) == 2
    assert "flux_continuity" in capsys.readouterr().err
    assert main(["metalic", "heldout", str(c.path), "-k", "3", "-j", "2"]) == 0
    out = capsys.readouterr()
    assert "18 of 18 runs to train" in out.err and "| metalic |" in out.out
    table = json.loads((c.dir / "heldout" / "results.json").read_text())
    contexts = heldout.heldout_contexts(c.contexts, 3)
    assert table["contexts"] == contexts
    kappas = [ctx["kappa"] for ctx in contexts]
    assert kappas == sorted(kappas) and 0.01 < kappas[0] and kappas[-1] < 1.0
    for i, ctx in enumerate(contexts):
        for a in range(len(c.arms)):
            want = ctx["kappa"] * 10.0 ** -len(c.arms.conditions(a))
            assert table["errors"][i][a] == pytest.approx(want)
    cmp = json.loads((c.dir / "heldout" / "comparison.json").read_text())["methods"]
    assert len(c.arms.conditions(cmp["best fixed"]["arms"][0])) == 2
    assert cmp["best fixed"]["mean"] == pytest.approx(cmp["oracle"]["mean"])
    assert cmp["default"]["mean"] == pytest.approx(cmp["oracle"]["mean"])  # avg+rc is a pair
    assert cmp["random (expected)"]["mean"] == pytest.approx(np.mean(table["errors"]))
    assert cmp["oracle"]["worst"] <= cmp["metalic"]["worst"] <= max(map(max, table["errors"]))
    # nothing is trained twice; the report carries the comparison
    assert main(["metalic", "heldout", str(c.path), "-k", "3"]) == 0
    assert "0 of 18 runs to train" in capsys.readouterr().err
    assert main(["metalic", "report", str(c.path)]) == 0
    report = (c.dir / "report" / "report.md").read_text()
    assert "## Held-out comparison" in report and "| best fixed |" in report
    assert (c.dir / "report" / "heldout.png").stat().st_size > 0

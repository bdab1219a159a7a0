"""Run identity, the decisions of a start in a run directory, and the lock (no MPI)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ddpinn.io import checkpoint, rundir
from ddpinn.io.config import ConfigError, load
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem


def fields_of(poisson_toml, *sets):
    cfg = load(poisson_toml, list(sets))
    return rundir.identity_fields(cfg, build_problem(cfg).pde.params)


def test_identity_ignores_training_settings_and_spelled_out_defaults(poisson_toml):
    base = rundir.fingerprint(fields_of(poisson_toml))
    for same in (["pde.params.k=2"], ["pde.params.k=2.0"], ["stages.0.steps=7", "stages.0.lr=0.5"],
                 ["points.interior=99", "case.dtype=\"float32\"", "output.plots=false"]):
        assert rundir.fingerprint(fields_of(poisson_toml, *same)) == base, same
    for other in (["pde.params.k=3"], ["network.width=8"], ["case.seed=1"],
                  ["decomposition.grid=[4, 1]"], ["domain.upper=[1.0, 2.0]"]):
        assert rundir.fingerprint(fields_of(poisson_toml, *other)) != base, other


def test_differences_name_the_fields(poisson_toml):
    text = rundir.differences(fields_of(poisson_toml, "network.width=8"),
                              fields_of(poisson_toml), "the checkpoint")
    assert text == "network.width = 8 here, 32 in the checkpoint"


def _checkpoint(path, run_id, step=10):
    meta = {"grid": [2, 2], "n_subdomains": 4, "run_id": run_id}
    scalars = {"global_step": step, "stage_index": 0, "stage_step": step, "epoch": 0}
    block = checkpoint.pack({"param/w": torch.zeros(4, 2)}, range(4))
    checkpoint.save(path, SerialComm(), block, {}, scalars, meta)


def test_a_fresh_start_never_mixes_with_a_run(tmp_path, poisson_toml):
    fields = fields_of(poisson_toml)
    assert rundir.plan_run(tmp_path, fields, None, False).state is None  # empty: fresh
    (tmp_path / "notes.txt").write_text("mine")  # a user's file is not a run
    plan = rundir.plan_run(tmp_path, fields, None, False)
    rundir.write_run_record(tmp_path, plan, fields, "poisson2d")
    with pytest.raises(rundir.RunDirError, match="--resume auto.*--overwrite"):
        rundir.plan_run(tmp_path, fields, None, False)
    with pytest.raises(rundir.RunDirError, match="network.width = 8 here, 32 in that run"):
        rundir.plan_run(tmp_path, fields_of(poisson_toml, "network.width=8"), "auto", False)
    again = rundir.plan_run(tmp_path, fields, "auto", False)  # no checkpoint: same run again
    assert again.run_id == plan.run_id and again.state is None


def test_resume_auto_takes_only_the_runs_own_checkpoints(tmp_path, poisson_toml):
    fields = fields_of(poisson_toml)
    plan = rundir.plan_run(tmp_path, fields, None, False)
    rundir.write_run_record(tmp_path, plan, fields, "poisson2d")
    ckpts = tmp_path / "checkpoints"
    _checkpoint(checkpoint.checkpoint_path(ckpts, 10), plan.run_id)
    _checkpoint(checkpoint.checkpoint_path(ckpts, 20), "a-stranger")
    assert [p.name for p in rundir.own_checkpoints(tmp_path, plan.run_id)] == \
        ["ckpt_00000010.pt"]
    # checkpoints without identity are checked by grid only (with a warning)
    resumed = rundir.plan_run(tmp_path, fields, "auto", False)
    assert resumed.resume.name == "ckpt_00000010.pt" and resumed.run_id == plan.run_id


def test_overwrite_moves_exactly_the_runs_files(tmp_path, poisson_toml):
    fields = fields_of(poisson_toml)
    plan = rundir.plan_run(tmp_path, fields, None, False)
    rundir.write_run_record(tmp_path, plan, fields, "poisson2d")
    for name in ("metrics.jsonl", "config.toml", "eval_nodes.csv", "notes.txt", "plots/loss.png",
                 "plots/mine.png",
                 "checkpoints/best_ckpt_00000005.pt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    _checkpoint(checkpoint.checkpoint_path(tmp_path / "checkpoints", 10), plan.run_id)
    new = rundir.plan_run(tmp_path, fields, None, True)
    assert new.run_id != plan.run_id
    dest = rundir.move_aside(tmp_path, new.aside, new.aside_id)
    moved = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert moved == ["checkpoints/ckpt_00000010.pt", "config.toml", "eval_nodes.csv", "metrics.jsonl",
                     "plots/loss.png", "run.json"]
    for mine in ("notes.txt", "plots/mine.png", "checkpoints/best_ckpt_00000005.pt"):
        assert (tmp_path / mine).read_text() == mine


def test_pruning_keeps_other_runs_and_user_files(tmp_path):
    ckpts = tmp_path / "checkpoints"
    _checkpoint(checkpoint.checkpoint_path(ckpts, 1), "other")
    (ckpts / "best_ckpt_00000002.pt").write_text("mine")
    for step in (3, 4, 5):
        meta = {"grid": [2, 2], "n_subdomains": 4, "run_id": "me"}
        checkpoint.save(checkpoint.checkpoint_path(ckpts, step), SerialComm(),
                        checkpoint.pack({"w": torch.zeros(1)}, [0]), {}, {}, meta, keep=1)
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "best_ckpt_00000002.pt", "ckpt_00000001.pt", "ckpt_00000005.pt"]


def test_the_lock_is_one_per_directory_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from ddpinn.io.rundir import RunLock; lock = RunLock(Path(sys.argv[1])); lock.acquire(); "
         "print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(rundir.RunDirError, match=f"in use by another ddpinn run \\(pid {holder.pid}"):
        rundir.RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    lock = rundir.RunLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead process's lock
    lock.release()


def test_bad_overrides_and_case_names(poisson_toml):
    with pytest.raises(ConfigError, match="not a valid TOML value"):
        load(poisson_toml, ['output.dir="out/x'])
    with pytest.raises(ConfigError, match="not a valid TOML value"):
        load(poisson_toml, ["decomposition.grid=[2, 2"])
    assert load(poisson_toml, ["output.dir=plain/word"]).output.dir == "plain/word"
    for name in ('""', '"  "', '"a/b"', '".."'):
        with pytest.raises(ConfigError, match="case.name"):
            load(poisson_toml, [f"case.name={name}"])
    assert json.loads(json.dumps(load(poisson_toml).to_dict()))  # still a plain config

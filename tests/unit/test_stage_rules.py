"""Stopping rules and precision settings of a stage: the rules on given losses, their
checkpoint state, the config checks (one message naming the field, exit 2, nothing
written) and the memory estimate at the widest stage precision."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddpinn.io.config import ConfigError, StageSection, load
from ddpinn.problem import build_problem
from ddpinn.training.memory import estimate_rank_memory
from ddpinn.training.precision import largest_dtype
from ddpinn.training.stage_rules import STOP_RULES, StageRules

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "mpi" / "cases" / "stages.toml"


def _end(stage, losses, minutes=None):
    """(index of the step that ends the stage, rule) for these losses, or (None, "")."""
    rules = StageRules(stage)
    for i, loss in enumerate(losses):
        m = 0.0 if minutes is None else minutes[i]
        if rules.after_step(loss, m):
            return i, rules.ended_by
    return None, ""


def test_target_loss_ends_at_the_first_step_at_or_below_it():
    st = StageSection(target_loss=0.5)
    assert _end(st, [2.0, 1.0, 0.6, 0.5, 0.1]) == (3, "target_loss")
    assert _end(st, [2.0, 1.0, 0.6]) == (None, "")


def test_plateau_counts_steps_since_a_relative_improvement_above_the_floor():
    st = StageSection(min_improvement=0.1, patience=3)
    # 1.0 -> 0.95 -> 0.92 -> 0.89: each under 10 % of the reference 1.0 ... until 0.89
    # (11 %), which resets; then three steps of no 10 % gain over 0.89.
    losses = [1.0, 0.95, 0.92, 0.89, 0.85, 0.84, 0.83, 0.10]
    assert _end(st, losses) == (6, "min_improvement")
    assert _end(StageSection(min_improvement=0.1, patience=4), losses) == (None, "")
    # Steady 20 % gains never stop it; growth does, after patience steps.
    assert _end(st, [0.8 ** k for k in range(30)]) == (None, "")
    assert _end(st, [1.0, 1.1, 1.2, 1.3]) == (3, "min_improvement")


def test_max_minutes_and_the_rule_order():
    st = StageSection(max_minutes=2.0, target_loss=0.1)
    assert _end(st, [5.0, 4.0, 3.0], minutes=[0.5, 1.9, 2.0]) == (2, "max_minutes")
    assert _end(st, [5.0, 0.1], minutes=[0.5, 3.0]) == (1, "target_loss")  # first listed
    assert list(STOP_RULES) == ["target_loss", "min_improvement", "max_minutes"]
    assert _end(StageSection(), [1.0] * 50, minutes=[1e9] * 50) == (None, "")  # rules off


def test_rule_state_round_trips_through_checkpoint_scalars():
    st = StageSection(min_improvement=0.1, patience=3)
    a, b = StageRules(st), StageRules(st)
    assert a.state()["stage_best"] is None  # nothing seen yet (JSON-able, no inf)
    losses = [1.0, 0.95, 0.92, 0.85, 0.84, 0.83]
    for loss in losses[:4]:
        a.after_step(loss, 0.0)
    b.load_state(a.state())
    assert (b.best, b.wait, b.ended_by) == (a.best, a.wait, a.ended_by)
    assert [b.after_step(x, 0.0) for x in losses[4:]] == \
        [a.after_step(x, 0.0) for x in losses[4:]]
    fresh = StageRules(st)
    fresh.load_state({})
    assert fresh.best == math.inf and fresh.wait == 0 and fresh.ended_by == ""


# -- config ------------------------------------------------------------------------------
BAD = [
    ("stages.0.target_loss=-1.0", "stages[0].target_loss", ">= 0"),
    ("stages.1.patience=0", "stages[1].patience", "integer >= 1"),
    ("stages.1.patience=2.5", "stages[1].patience", "integer >= 1"),
    ("stages.0.min_improvement=1.5", "stages[0].min_improvement", "[0, 1)"),
    ("stages.0.max_minutes=0", "stages[0].max_minutes", "> 0"),
    ("stages.0.target_loss=\"low\"", "stages[0].target_loss", ">= 0"),
    ("stages.1.dtype=\"float16\"", "stages[1].dtype", "float32, float64"),
    ("case.dtype=\"half\"", "case.dtype", "float32, float64"),
]


@pytest.mark.parametrize("override,field,allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_stage_values_name_the_field_value_and_choices(override, field, allowed):
    with pytest.raises(ConfigError) as exc:
        load(CASE, [override])
    msg = str(exc.value)
    assert f"'{field}'" in msg and allowed in msg, msg
    assert override.split("=", 1)[1].strip('"') in msg, msg  # the value


def test_defaults_are_resolved():
    cfg = load(CASE, ["stages.0.dtype=\"float64\"", "case.dtype=\"float32\""])
    st0, st1 = cfg.stages
    assert st0.dtype == "float64" and st1.dtype == "float64"  # stages.toml sets both
    cfg = load(CASE, ["case.dtype=\"float32\"", "stages.1.patience=7"])
    assert cfg.stages[1].min_improvement == 0.0 and cfg.stages[1].patience == 7
    assert cfg.stages[0].patience is None and cfg.stages[0].min_improvement is None
    cfg = load(CASE, ["stages.1.min_improvement=0.01"])
    assert cfg.stages[1].patience == 100 and cfg.stages[1].target_loss is None


def test_a_stage_without_dtype_takes_the_case_dtype(tmp_path):
    text = CASE.read_text().replace('dtype = "float32"\n', "").replace(
        'dtype = "float64"\n', "")
    case = tmp_path / "case.toml"
    case.write_text(text)
    assert [st.dtype for st in load(case, ['case.dtype="float32"']).stages] == \
        ["float32", "float32"]
    assert [st.dtype for st in load(case).stages] == ["float64", "float64"]


def test_bad_value_exits_2_with_one_message_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "ddpinn.cli", "run", str(CASE), "--set",
                           f'output.dir="{out}"', "--set", "stages.1.patience=0"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ddpinn: error:")]
    assert len(lines) == 1 and "'stages[1].patience' = 0" in lines[0], proc.stderr
    assert not out.exists()


# -- memory --------------------------------------------------------------------------------
def test_memory_estimate_uses_the_widest_stage_precision():
    def params(*sets):
        cfg = load(CASE, list(sets))
        return cfg, estimate_rank_memory(cfg, build_problem(cfg), 1)["parameters"]

    cfg, mixed = params()  # float32 then float64
    assert largest_dtype(cfg) == "float64"
    _, single = params('stages.1.dtype="float32"')
    _, double = params('stages.0.dtype="float64"')
    assert mixed == double == 2 * single

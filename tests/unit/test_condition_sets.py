"""Separate interface-condition sets for space and time interfaces."""
from pathlib import Path

import pytest

from ddpinn.interface.conditions import ConditionSet
from ddpinn.io.config import ConfigError, load
from ddpinn.io.metrics import read_metrics
from ddpinn.parallel import SerialComm
from ddpinn.problem import build_problem
from ddpinn.training.solver import Solver
from ddpinn.training.trainer import Trainer

HEAT = Path(__file__).resolve().parents[2] / "cases" / "heat1d.toml"
SMALL = ["case.dtype=\"float64\"", "network.width=8", "points.interior=40",
         "points.boundary=8", "points.interface=8", "stages.0.steps=1", "stages.1.steps=1",
         "output.log_every=0", "output.eval_every=0", "output.plots=false"]


def test_a_list_applies_to_every_interface():
    cs = ConditionSet.of(["average_solution", "residual_continuity"])
    assert cs.uniform and cs.space == cs.time
    assert list(cs) == ["average_solution", "residual_continuity"]
    assert cs.kinds("average_solution") == ("space", "time")
    assert cs.as_config() == ["average_solution", "residual_continuity"]
    assert str(cs) == "average_solution, residual_continuity"


def test_a_table_gives_each_kind_its_set():
    cs = ConditionSet.of({"space": ["solution_continuity", "flux_continuity"],
                          "time": ["solution_continuity"]})
    assert not cs.uniform
    assert list(cs) == ["solution_continuity", "flux_continuity"]
    assert cs.kinds("flux_continuity") == ("space",)
    assert cs.kinds("solution_continuity") == ("space", "time")
    assert "flux_continuity" in cs and "average_solution" not in cs
    assert cs.as_config() == {"space": ["solution_continuity", "flux_continuity"],
                              "time": ["solution_continuity"]}
    assert str(cs) == "space: solution_continuity, flux_continuity; time: solution_continuity"


@pytest.mark.parametrize("value, words", [
    ({"space": ["average_solution"]}, ["interface.conditions", "'time'"]),
    ({"space": ["average_solution"], "time": ["x"]}, ["interface.conditions.time", "'x'"]),
    ({"space": ["average_solution"], "time": []}, ["interface.conditions.time", "empty"]),
    ({"space": ["average_solution"], "tme": ["average_solution"]},
     ["interface.conditions.tme", "space, time"]),
    ({"space": "average_solution", "time": ["average_solution"]},
     ["interface.conditions.space", "list of condition names"]),
    (["average_solution", "average_solution"], ["repeats"]),
    (3, ["interface.conditions", "table"]),
])
def test_bad_sets_name_the_field(value, words):
    with pytest.raises(ValueError) as exc:
        ConditionSet.of(value)
    for w in words:
        assert w in str(exc.value)


def _first_row(tmp_path, name, conditions):
    cfg = load(HEAT, SMALL + [f"interface.conditions={conditions}",
                              f'output.dir="{tmp_path / name}"'])
    (tmp_path / name).mkdir()
    trainer = Trainer(Solver(build_problem(cfg), SerialComm()), tmp_path / name)
    trainer.train()
    return read_metrics(tmp_path / name / "metrics.jsonl")[0]


def test_a_condition_of_one_kind_counts_on_that_kind_only(tmp_path):
    """Residual continuity on every interface = on space interfaces + on time interfaces."""
    both = _first_row(tmp_path, "both", '["residual_continuity"]')
    time_only = _first_row(tmp_path, "time",
                           '{space = ["solution_continuity"], time = ["residual_continuity"]}')
    space_only = _first_row(tmp_path, "space",
                            '{space = ["residual_continuity"], time = ["solution_continuity"]}')
    rc = "if_residual_continuity"
    assert time_only[rc] > 0 and space_only[rc] > 0
    assert time_only[rc] + space_only[rc] == pytest.approx(both[rc], rel=1e-12)
    assert time_only["if_solution_continuity"] > 0


def test_stage_and_case_sets_in_a_case_file(tmp_path):
    cfg = load(HEAT, SMALL + [
        'interface.conditions={space = ["average_solution"], time = ["solution_continuity"]}',
        'stages.1.conditions={space = ["flux_continuity"], time = ["solution_continuity"]}'])
    problem = build_problem(cfg)
    assert problem.conditions.space == ("average_solution",)
    assert problem.stage_conditions[0] == problem.conditions
    assert problem.stage_conditions[1].kinds("flux_continuity") == ("space",)
    with pytest.raises(ConfigError, match=r"stages\[1\].conditions.time"):
        build_problem(load(HEAT, SMALL + ['stages.1.conditions={space = ["flux_continuity"], '
                                          'time = []}']))

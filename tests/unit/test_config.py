"""Case files -> typed config -> problem: every bad input is one ConfigError naming the field
and what is allowed; ``--set`` overrides; every shipped case loads and builds."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ddpinn.interface import CONDITIONS
from ddpinn.io.config import ConfigError, load
from ddpinn.pdes import PDES
from ddpinn.problem import build_problem

CASES = sorted((Path(__file__).resolve().parents[2] / "cases").glob("*.toml"))


def edit(path: Path, key: str, new: str) -> Path:
    """Replace the first line ``key = ...`` (or a ``[section]`` header when ``key`` starts
    with "[") of the case file by ``new`` (an empty ``new`` deletes the line).

    The base is a copy of cases/poisson2d.toml, whose values may change: edits go by key,
    never by value.
    """
    text = path.read_text()
    if key.startswith("["):
        pattern = r"^" + re.escape(key) + r"[ \t]*\n"
    else:
        pattern = r"^" + re.escape(key) + r"[ \t]*=[^\n]*\n"
    new_text, n = re.subn(pattern, new + "\n" if new else "", text, count=1, flags=re.M)
    assert n == 1, f"no line {key!r} in the base case"
    path.write_text(new_text)
    return path


def edit_pde_name(path: Path, new: str) -> Path:
    """Replace (or with ``new`` empty, delete) the ``name`` line of the [pde] section."""
    text = path.read_text()
    start = text.index("[pde]")
    tail = re.sub(r"^name[ \t]*=[^\n]*\n", new + "\n" if new else "", text[start:], count=1,
                  flags=re.M)
    assert tail != text[start:], "no name in [pde]"
    path.write_text(text[:start] + tail)
    return path


def load_and_build(path, overrides=None):
    cfg = load(path, overrides)
    return cfg, build_problem(cfg)


def error_of(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_and_build(path, overrides)
    return str(exc.value)


def test_base_case_loads(poisson_toml):
    cfg, problem = load_and_build(poisson_toml)
    assert cfg.pde.name == "poisson" and cfg.space_dim == 2 and not cfg.has_time
    assert cfg.output.dir == str(Path("runs") / cfg.case.name)
    assert problem.decomposition.n_subdomains == cfg.decomposition.grid[0] * \
        cfg.decomposition.grid[1]
    assert list(problem.conditions) == list(cfg.interface.conditions)
    assert problem.condition_weights == cfg.interface.weights
    assert problem.time_axis is None
    assert problem.box.names == ("x", "y")


# -- errors in the file ---------------------------------------------------------------------
def test_unknown_pde_lists_known(poisson_toml):
    msg = error_of(edit_pde_name(poisson_toml, 'name = "poison"'))
    assert "pde.name" in msg and "'poison'" in msg
    for name in PDES:
        assert name in msg


def test_unknown_condition_lists_allowed(poisson_toml):
    msg = error_of(edit(poisson_toml, "conditions",
                        'conditions = ["average_solution", "continuity_of_vibes"]'))
    assert "interface.conditions" in msg and "'continuity_of_vibes'" in msg
    for name in CONDITIONS:
        assert name in msg


@pytest.mark.parametrize("grid", ["[2, 0]", "[-1, 2]", "[2, 2.5]", "[true, 2]"])
def test_bad_grid_entry(poisson_toml, grid):
    msg = error_of(edit(poisson_toml, "grid", f"grid = {grid}"))
    assert "decomposition.grid" in msg and "positive integer" in msg


@pytest.mark.parametrize("grid", ["[2]", "[2, 2, 2]"])
def test_grid_of_wrong_length(poisson_toml, grid):
    msg = error_of(edit(poisson_toml, "grid", f"grid = {grid}"))
    assert "decomposition.grid" in msg and "one entry per axis" in msg and "(x, y)" in msg


def test_grid_length_counts_time_axis(poisson_toml):
    path = edit(poisson_toml, "upper", "upper = [1.0, 1.0]\ntime = [0.0, 1.0]")
    msg = error_of(path)
    assert "decomposition.grid" in msg and "(x, y, t)" in msg


def test_misspelt_section_field(poisson_toml):
    msg = error_of(edit(poisson_toml, "width", "widht = 3"))
    assert "network.widht" in msg and "did you mean 'width'" in msg
    assert "depth" in msg  # the allowed fields are listed


def test_misspelt_stage_field(poisson_toml):
    msg = error_of(edit(poisson_toml, "steps", "stpes = 20"))
    assert "stpes" in msg and "did you mean 'steps'" in msg


def test_misspelt_top_level_section(poisson_toml):
    msg = error_of(edit(poisson_toml, "[network]", "[netwrok]"))
    assert "'netwrok'" in msg and "did you mean 'network'" in msg
    for section in ("case", "domain", "decomposition", "pde", "stages", "output"):
        assert section in msg


@pytest.mark.parametrize("old,field", [
    ("[pde]", "pde.name"),
    ("grid", "decomposition.grid"),
    ("lower", "domain.lower"),
])
def test_missing_required_field(poisson_toml, old, field):
    if old == "[pde]":  # drop the name line of [pde], keep the section
        msg = error_of(edit_pde_name(poisson_toml, ""))
    else:
        msg = error_of(edit(poisson_toml, old, ""))
    assert "missing required field" in msg and repr(field) in msg


@pytest.mark.parametrize("old,new,field,want", [
    ("width", 'width = "big"', "network.width", "an integer"),
    ("interior", "interior = 10.5", "points.interior", "an integer"),
    ("lr", 'lr = "fast"', "stages[0].lr", "a number"),
    ("seed", "seed = true", "case.seed", "an integer"),
    ("params", "params = 3", "pde.params", "a table"),
    ("grid", "grid = 4", "decomposition.grid", "a list"),
    ("dtype", "dtype = 32", "case.dtype", "a string"),
])
def test_wrong_type(poisson_toml, old, new, field, want):
    msg = error_of(edit(poisson_toml, old, new))
    assert field in msg and "wrong type" in msg and want in msg


@pytest.mark.parametrize("override,field,allowed", [
    ("stages.0.optimizer=sgd", "stages[0].optimizer", ["adam", "lbfgs"]),
    ("stages.1.schedule=linear", "stages[1].schedule", ["constant", "exponential", "cosine"]),
    ("case.dtype=float16", "case.dtype", ["float32", "float64"]),
    ("network.activation=relu", "network.activation", ["tanh", "sin", "gelu", "silu"]),
    ("parallel.backend=nccl", "parallel.backend", ["mpi4py", "torch", "horovod"]),
])
def test_bad_choice(poisson_toml, override, field, allowed):
    msg = error_of(poisson_toml, [override])
    assert field in msg and "choose one of" in msg
    for a in allowed:
        assert a in msg


def test_bad_optimizer_in_file(poisson_toml):
    msg = error_of(edit(poisson_toml, "optimizer", 'optimizer = "sgd"'))
    assert "stages[0].optimizer" in msg and "'sgd'" in msg and "adam, lbfgs" in msg


def test_invalid_toml(poisson_toml):
    poisson_toml.write_text(poisson_toml.read_text() + "\n[[[ broken\n")
    msg = error_of(poisson_toml)
    assert "not valid TOML" in msg and poisson_toml.name in msg


def test_missing_file(tmp_path):
    msg = error_of(tmp_path / "nope.toml")
    assert "cannot read case file" in msg and "nope.toml" in msg


@pytest.mark.parametrize("override,field", [
    ("network.width=0", "network.width"),
    ("points.interior=0", "points.interior"),
    ("stages.0.steps=-3", "stages[0].steps"),
    ("domain.upper=[1.0, -1.0]", "domain.upper[1]"),
    ("domain.time=[1.0, 0.0]", "domain.time"),
    ("domain.periodic=['q']", "domain.periodic"),
])
def test_out_of_range(poisson_toml, override, field):
    msg = error_of(poisson_toml, [override])
    assert field in msg


def test_unknown_pde_parameter(poisson_toml):
    msg = error_of(edit(poisson_toml, "params", "params = { kk = 2.0 }"))
    assert "pde.params.kk" in msg and "allowed: k" in msg


def test_time_axis_mismatch(poisson_toml):
    msg = error_of(poisson_toml, ["pde.name=heat"])
    assert "domain.time" in msg


def test_weight_of_inactive_condition(poisson_toml):
    msg = error_of(poisson_toml, ["interface.weights={flux_continuity = 2.0}"])
    assert "interface.weights.flux_continuity" in msg and "average_solution" in msg


def test_bad_override_syntax(poisson_toml):
    assert "section.field=value" in error_of(poisson_toml, ["network.width"])
    assert "no list entry" in error_of(poisson_toml, ["stages.5.steps=3"])
    msg = error_of(poisson_toml, ["network.widht=8"])
    assert "did you mean 'width'" in msg


# -- overrides --------------------------------------------------------------------------------
def test_overrides(poisson_toml):
    base = load(poisson_toml)
    cfg, problem = load_and_build(poisson_toml, ["stages.0.steps=5", "network.width=8",
                                                 "case.dtype=float64", "stages.1.lr=0.5",
                                                 "decomposition.grid=[4, 1]",
                                                 "output.dir=somewhere/else"])
    assert cfg.stages[0].steps == 5 and isinstance(cfg.stages[0].steps, int)
    assert cfg.stages[1].steps == base.stages[1].steps
    assert cfg.network.depth == base.network.depth
    assert cfg.stages[1].lr == 0.5
    assert cfg.network.width == 8
    assert cfg.case.dtype == "float64"  # bare word is a string
    assert cfg.output.dir == "somewhere/else"
    assert problem.decomposition.n_subdomains == 4 and problem.decomposition.grid == (4, 1)


def test_override_bare_word_float32(poisson_toml):
    edit(poisson_toml, "dtype", 'dtype = "float64"')
    cfg = load(poisson_toml, ["case.dtype=float32"])
    assert cfg.case.dtype == "float32"


def test_override_adds_missing_section(poisson_toml):
    cfg = load(poisson_toml, ["parallel.threads=2", "pde.params.k=3.0"])
    assert cfg.parallel.threads == 2
    assert cfg.pde.params == {"k": 3.0}


def test_override_wrong_type(poisson_toml):
    msg = error_of(poisson_toml, ["network.width=eight"])
    assert "network.width" in msg and "an integer" in msg


def test_ints_widen_to_float(poisson_toml):
    cfg = load(poisson_toml, ["stages.0.lr=1"])
    assert cfg.stages[0].lr == 1.0 and isinstance(cfg.stages[0].lr, float)


def test_loading_writes_nothing(poisson_toml, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    load_and_build(poisson_toml)
    with pytest.raises(ConfigError):
        load_and_build(poisson_toml, ["network.widht=1"])
    assert os.listdir(work) == []


def test_plugin_pde_through_config(poisson_toml, tmp_path, monkeypatch):
    (tmp_path / "ddpinn_cfg_plugin_mod.py").write_text(
        "from ddpinn.pdes.elliptic import Poisson\n\n"
        "class MyPoisson(Poisson):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg, problem = load_and_build(poisson_toml, ["pde.name='ddpinn_cfg_plugin_mod:MyPoisson'"])
    assert type(problem.pde).__name__ == "MyPoisson"
    msg = error_of(poisson_toml, ["pde.name='ddpinn_cfg_plugin_mod:Missing'"])
    assert "pde.name" in msg and "cannot be imported" in msg


# -- types inside tables, ranges, overrides ---------------------------------------------------
def test_domain_time_scalar(poisson_toml):
    msg = error_of(poisson_toml, ["domain.time=1.0"])
    assert "domain.time" in msg


def test_override_through_scalar(poisson_toml):
    msg = error_of(poisson_toml, ["case.name.x=1"])
    assert "case.name" in msg


@pytest.mark.parametrize("override,field", [
    ("pde.params.k='two'", "pde.params.k"),
    ("interface.weights.average_solution='big'", "interface.weights.average_solution"),
    ("pde.inverse={k='x'}", "pde.inverse.k"),
])
def test_table_values_are_type_checked(poisson_toml, override, field):
    msg = error_of(poisson_toml, [override])
    assert field in msg


@pytest.mark.parametrize("override,field", [
    ("stages.0.lr=-1.0", "stages[0].lr"),
    ("stages.0.decay_steps=0", "stages[0].decay_steps"),
    ("points.data=-1", "points.data"),
    ("network.fourier_features=-1", "network.fourier_features"),
    ("network.periodic_harmonics=0", "network.periodic_harmonics"),
    ("output.grid=[0, 5]", "output.grid"),
])
def test_out_of_range_values_are_rejected(poisson_toml, override, field):
    msg = error_of(poisson_toml, [override])
    assert field in msg


# -- every shipped case ----------------------------------------------------------------------
def test_cases_exist():
    assert len(CASES) >= 9


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_shipped_case_loads_and_builds(path):
    cfg, problem = load_and_build(path)
    assert cfg.pde.name in PDES
    d = problem.decomposition
    assert d.n_subdomains == int(__import__("numpy").prod(cfg.decomposition.grid))
    assert len(d.grid) == len(cfg.axis_names)
    assert problem.pde.time_dependent == cfg.has_time
    for c in problem.conditions:
        assert c in CONDITIONS
    # The run command in a comment, as the design asks.
    assert "ddpinn run" in path.read_text()

"""Checkpoints keyed by sid: pack/gather, save/load round trip, rotation, corruption, format-1
files, and a full Solver/Trainer restart that continues the uninterrupted loss trajectory."""
from __future__ import annotations

import hashlib

import pytest
import torch

from ddpinn.io import checkpoint
from ddpinn.io.checkpoint import CheckpointError
from ddpinn.io.config import load
from ddpinn.io.metrics import read_metrics
from ddpinn.parallel import SerialComm
from ddpinn.parallel.errors import DDPINNError
from ddpinn.problem import build_problem
from ddpinn.training.solver import Solver
from ddpinn.training.trainer import Trainer


def expert_states(sids, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {s: {"param/w": torch.randn(3, 4, dtype=torch.float64, generator=g),
                "param/b": torch.randn(1, 4, dtype=torch.float64, generator=g),
                "adam/exp_avg/w": torch.rand(3, 4, dtype=torch.float32, generator=g)}
            for s in sids}


def as_block(experts: dict) -> dict:
    sids = sorted(experts)
    names = list(experts[sids[0]])
    return checkpoint.pack({n: torch.stack([experts[s][n] for s in sids]) for n in names}, sids)


def save_one(directory, step, keep=0, seed=0):
    path = checkpoint.checkpoint_path(directory, step)
    experts = expert_states([0, 1, 2, 3], seed)
    shared = {"param/kappa": torch.tensor(0.25, dtype=torch.float64),
              "adam/step": torch.tensor(7.0)}
    scalars = {"global_step": step, "stage_index": 0, "lbfgs_rho": [0.5, 0.25]}
    meta = {"case": "t", "grid": [2, 2], "n_subdomains": 4, "ranks": 1}
    checkpoint.save(path, SerialComm(), as_block(experts), shared, scalars, meta, keep=keep)
    return path, experts, shared, scalars, meta


# -- pack / gather ----------------------------------------------------------------------------
def test_pack_and_gather_round_trip():
    g = torch.Generator().manual_seed(1)
    named = {"w": torch.randn(3, 5, 2, generator=g), "b": torch.randn(3, 1, 2, generator=g),
             "s": torch.randn(3, generator=g)}
    other = {n: torch.randn(2, *t.shape[1:], generator=g) for n, t in named.items()}
    block = checkpoint.pack(named, [7, 2, 4])
    assert block["sids"].tolist() == [7, 2, 4]
    for n, t in named.items():
        assert torch.equal(block[n], t) and block[n].data_ptr() != t.data_ptr()  # a copy
    state = {"format": 2, "blocks": [block, checkpoint.pack(other, [0, 9])]}
    assert checkpoint.sids_in(state) == [0, 2, 4, 7, 9]
    back = checkpoint.gather_sids(state, [7, 2, 4])
    for n in named:
        assert torch.equal(back[n], named[n])
    # Another rank count picks another subset, in its own order, across blocks.
    sub = checkpoint.gather_sids(state, [4, 9, 7, 0])
    assert torch.equal(sub["w"], torch.stack([named["w"][2], other["w"][1], named["w"][0],
                                              other["w"][0]]))
    assert torch.equal(checkpoint.record(state, 9)["s"], other["s"][1])
    with pytest.raises(CheckpointError, match=r"no state for subdomains \[5\]"):
        checkpoint.gather_sids(state, [2, 5])


def test_pack_detaches():
    p = torch.nn.Parameter(torch.ones(2, 3))
    block = checkpoint.pack({"p": p * 2}, [0, 1])
    assert not block["p"].requires_grad


def test_format_1_files_still_restore(tmp_path):
    """A checkpoint written with one record per expert (format 1) loads and gathers."""
    import io

    experts = expert_states([0, 1, 2])
    state = {"format": 1, "meta": {}, "experts": {str(s): v for s, v in experts.items()},
             "shared": {}, "scalars": {}}
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    path = tmp_path / "ckpt_00000001.pt"
    path.write_bytes(checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
                     + payload)
    loaded = checkpoint.load(path)
    assert checkpoint.sids_in(loaded) == [0, 1, 2]
    got = checkpoint.gather_sids(loaded, [2, 0])
    assert torch.equal(got["param/w"], torch.stack([experts[2]["param/w"],
                                                    experts[0]["param/w"]]))


def test_many_experts_are_one_record_per_rank(tmp_path):
    """4096 experts: the file holds one tensor per name, not one per expert and name."""
    n = 4096
    named = {"param/w": torch.randn(n, 8, 8), "param/b": torch.randn(n, 1, 8)}
    path = tmp_path / "ckpt_00000001.pt"
    checkpoint.save(path, SerialComm(), checkpoint.pack(named, range(n)), {}, {}, {})
    state = checkpoint.load(path)
    assert len(state["blocks"]) == 1 and set(state["blocks"][0]) == {"sids", *named}
    sids = list(range(n - 1, -1, -3))
    got = checkpoint.gather_sids(state, sids)
    assert torch.equal(got["param/w"], named["param/w"][sids])


# -- save / load ----------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    path, experts, shared, scalars, meta = save_one(tmp_path, 3)
    assert path.name == "ckpt_00000003.pt"
    header, _, payload = path.read_bytes().partition(b"\n")
    assert header == checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode()
    state = checkpoint.load(path)
    assert state["format"] == checkpoint.FORMAT
    assert state["meta"] == meta and state["scalars"] == scalars
    assert checkpoint.sids_in(state) == [0, 1, 2, 3]
    for s, named in experts.items():
        got = checkpoint.record(state, s)
        assert sorted(got) == sorted(named)
        for n, t in named.items():
            assert got[n].dtype == t.dtype
            assert torch.equal(got[n], t)
    for n, t in shared.items():
        assert torch.equal(state["shared"][n], t)
    # No temporary files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_keep_only_newest(tmp_path):
    for step in (1, 2, 10, 11):
        save_one(tmp_path, step, keep=2, seed=step)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt_00000010.pt", "ckpt_00000011.pt"]
    assert checkpoint.list_checkpoints(tmp_path) == [tmp_path / "ckpt_00000010.pt",
                                                     tmp_path / "ckpt_00000011.pt"]


def test_keep_zero_keeps_all(tmp_path):
    for step in (1, 2, 3):
        save_one(tmp_path, step, keep=0)
    assert len(checkpoint.list_checkpoints(tmp_path)) == 3


def newest(directory):
    found = checkpoint.list_checkpoints(directory)
    return found[-1] if found else None


def test_list_checkpoints_numeric_order(tmp_path):
    assert checkpoint.list_checkpoints(tmp_path) == []
    assert checkpoint.list_checkpoints(tmp_path / "missing") == []
    # Numeric, not lexical, order; unrelated files are ignored.
    for step in (9, 100, 20):
        save_one(tmp_path, step)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "ckpt_x.pt").write_text("x")
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == \
        ["ckpt_00000009.pt", "ckpt_00000020.pt", "ckpt_00000100.pt"]


def test_load_newest_falls_back_past_corrupted(tmp_path):
    load_newest = getattr(checkpoint, "load_newest", None)
    if load_newest is None:
        pytest.skip("ddpinn.io.checkpoint has no load_newest() in this version")
    for step in (1, 2, 3):
        save_one(tmp_path, step, seed=step)
    newest_path = tmp_path / "ckpt_00000003.pt"
    newest_path.write_bytes(newest_path.read_bytes()[:100])
    state, path = load_newest(checkpoint.list_checkpoints(tmp_path))
    assert path == tmp_path / "ckpt_00000002.pt"
    assert state["scalars"]["global_step"] == 2
    for p in checkpoint.list_checkpoints(tmp_path):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_newest(checkpoint.list_checkpoints(tmp_path))
    with pytest.raises(CheckpointError):
        load_newest([])


def _corruption_message(msg):
    return "corrupted" in msg or "cannot be read" in msg


def test_truncated_file_raises(tmp_path):
    path = save_one(tmp_path, 1)[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        checkpoint.load(path)
    assert "corrupted" in str(exc.value) and path.name in str(exc.value)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_flipped_byte_raises(tmp_path, where):
    path = save_one(tmp_path, 1)[0]
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        checkpoint.load(path)
    assert "corrupted" in str(exc.value)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError) as exc:
        checkpoint.load(tmp_path / "empty.pt")
    assert _corruption_message(str(exc.value))
    with pytest.raises(CheckpointError, match="cannot read"):
        checkpoint.load(tmp_path / "absent.pt")


@pytest.mark.parametrize("obj", [{"a": torch.zeros(2)}, [1, 2, 3], {"format": 99}])
def test_foreign_torch_file_raises(tmp_path, obj):
    path = tmp_path / "foreign.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="not a ddpinn checkpoint"):
        checkpoint.load(path)


class _Payload:
    """An arbitrary Python object: weights_only loading must refuse to unpickle it."""


def test_pickled_object_is_not_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(path)


# -- full Solver / Trainer restart ---------------------------------------------------------------
def make_trainer(case, run_dir, stages, checkpoint_every, extra=()):
    overrides = ["case.dtype=float64", "case.seed=3", "network.width=8", "network.depth=2",
                 "points.interior=50", "points.boundary=10", "points.interface=8",
                 "points.data=0", "decomposition.grid=[2, 2]",
                 f"stages={stages}", f"output.checkpoint_every={checkpoint_every}",
                 "output.keep_checkpoints=2", "output.eval_every=0", "output.log_every=0",
                 f"output.dir='{run_dir}'", *extra]
    cfg = load(case, overrides)
    solver = Solver(build_problem(cfg), SerialComm())
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(solver, run_dir)


def losses(run_dir):
    rows = read_metrics(run_dir / "metrics.jsonl")
    return [r["step"] for r in rows], [r["loss"] for r in rows]


def assert_same_trajectory(ref_dir, run_dir, n):
    ref_steps, ref = losses(ref_dir)
    steps, got = losses(run_dir)
    assert ref_steps == list(range(n)) and steps == list(range(n))
    for a, b in zip(ref, got):
        assert abs(a - b) <= 1e-12 * abs(a), (ref, got)


def assert_same_model(t1, t2):
    for (n, p), (_, q) in zip(t1.solver.model.named_parameters(),
                              t2.solver.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=n)


ADAM = "[{{optimizer='adam', steps={n}, lr=1e-2, schedule='exponential', decay_steps=2}}]"


def test_trainer_restart_continues_trajectory(poisson_toml, tmp_path):
    ref = make_trainer(poisson_toml, tmp_path / "ref", ADAM.format(n=6), 0)
    ref.train()

    first = make_trainer(poisson_toml, tmp_path / "run", ADAM.format(n=3), 3)
    first.train()
    ckpt = newest(tmp_path / "run" / "checkpoints")
    assert ckpt is not None and ckpt.name == "ckpt_00000003.pt"
    state = checkpoint.load(ckpt)
    assert state["scalars"]["global_step"] == 3
    assert checkpoint.sids_in(state) == [0, 1, 2, 3]
    assert state["meta"]["grid"] == [2, 2]

    resumed = make_trainer(poisson_toml, tmp_path / "run", ADAM.format(n=6), 3)
    resumed.restore(state)
    assert resumed.global_step == 3 and resumed.stage_step == 3
    resumed.train()
    assert resumed.global_step == 6
    assert_same_trajectory(tmp_path / "ref", tmp_path / "run", 6)
    assert_same_model(ref, resumed)
    # checkpoint_every=3 and keep_checkpoints=2: steps 3 and 6 remain.
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")] \
        == ["ckpt_00000003.pt", "ckpt_00000006.pt"]


def test_trainer_restart_inside_lbfgs_stage(poisson_toml, tmp_path):
    """Adam then L-BFGS with resampling: a restart in the middle of the L-BFGS stage keeps
    its history, the stage position and the sampling epoch."""
    stages = ("[{{optimizer='adam', steps=2, lr=1e-2}}, "
              "{{optimizer='lbfgs', steps={n}, lr=1.0, history=3, max_evals=4}}]")
    extra = ["points.resample_every=2"]
    ref = make_trainer(poisson_toml, tmp_path / "ref", stages.format(n=4), 0, extra)
    ref.train()
    first = make_trainer(poisson_toml, tmp_path / "run", stages.format(n=4), 4, extra)
    first.cfg.stages[1].steps = 2  # stop after step 4, inside the L-BFGS stage
    first.train()
    state = checkpoint.load(newest(tmp_path / "run" / "checkpoints"))
    assert state["scalars"]["stage_index"] == 1 and state["scalars"]["stage_step"] == 2
    resumed = make_trainer(poisson_toml, tmp_path / "run", stages.format(n=4), 4, extra)
    resumed.restore(state)
    resumed.train()
    assert_same_trajectory(tmp_path / "ref", tmp_path / "run", 6)
    assert_same_model(ref, resumed)


def test_restore_rejects_other_decomposition(poisson_toml, tmp_path):
    first = make_trainer(poisson_toml, tmp_path / "run", ADAM.format(n=1), 1)
    first.train()
    state = checkpoint.load(newest(tmp_path / "run" / "checkpoints"))
    other = make_trainer(poisson_toml, tmp_path / "other", ADAM.format(n=1), 1,
                         ["decomposition.grid=[4, 1]"])
    with pytest.raises(DDPINNError, match="another decomposition"):
        other.restore(state)


def test_stage_conditions_switch_between_stages(tmp_path):
    """A stage may name its own interface conditions; the trainer switches at the stage."""
    from ddpinn.io.config import load
    from ddpinn.parallel import SerialComm
    from ddpinn.problem import build_problem
    from ddpinn.training.solver import Solver
    from ddpinn.training.trainer import Trainer
    from ddpinn.io.metrics import read_metrics

    from pathlib import Path

    case = Path(__file__).resolve().parents[2] / "cases" / "poisson2d.toml"
    cfg = load(case, ["case.dtype=\"float64\"", "network.width=6", "points.interior=20",
                      "points.boundary=4", "points.interface=4", "stages.0.steps=2",
                      "stages.1.steps=2", "stages.1.conditions=[\"solution_continuity\"]",
                      "interface.weights={}", f'output.dir="{tmp_path}"',
                      "output.log_every=0", "output.eval_every=0"])
    problem = build_problem(cfg)
    assert problem.stage_conditions[1].as_config() == ["solution_continuity"]
    assert problem.stage_conditions[0] == problem.conditions
    trainer = Trainer(Solver(problem, SerialComm()), tmp_path)
    trainer.train()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[1]["if_average_solution"] > 0 and "if_solution_continuity" not in rows[1]
    assert "if_solution_continuity" in rows[3] and "if_average_solution" not in rows[3]
    assert trainer.solver.quantities == ("u",)

"""ddpinn.io.plots on synthetic run directories."""
import json
import math
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ddpinn.io.netcdf import write_solution  # noqa: E402
from ddpinn.io.plots import plot_run, read_metrics, reduce_to_2d  # noqa: E402


def _write_decomposition(run_dir, lower, upper, owner, names, grid):
    (run_dir / "decomposition.json").write_text(json.dumps(
        {"axis_names": names, "lower": lower, "upper": upper, "owner": owner, "grid": grid}))


def _write_metrics(run_dir, n_lines=20):
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for step in range(n_lines):
            rec = {"step": step * 10, "loss": math.exp(-0.1 * step), "residual": 0.5 / (step + 1),
                   "boundary": 0.1 / (step + 1), "data": 0.0, "if_continuity": 1e-3 * (step + 1),
                   "if_flux": 0.0, "mismatch_space": 1e-4, "mismatch_time": 0.0}
            if step == 3:
                rec["loss"] = float("nan")  # a NaN must not break the log plot
            if step % 5 == 4:
                rec["l2_u"] = 0.1 / (step + 1)
                rec["l2_p"] = 0.2 / (step + 1)
            fh.write(json.dumps(rec) + "\n")


def _write_2d_run(run_dir):
    x, y = np.linspace(0, 1, 9), np.linspace(0, 1, 7)
    X, Y = np.meshgrid(x, y, indexing="ij")
    u = np.sin(np.pi * X) * np.sin(np.pi * Y)
    write_solution(run_dir / "solution.nc", ("x", "y"), [x, y],
                   {"u": u, "p": X - Y}, errors={"u": 1e-3 * (X - 0.5)},
                   attrs={"l2_u": 2.5e-3})
    _write_decomposition(run_dir, [[0, 0], [0.5, 0], [0, 0.5], [0.5, 0.5]],
                         [[0.5, 0.5], [1, 0.5], [0.5, 1], [1, 1]], [0, 0, 1, 1],
                         ["x", "y"], [2, 2])
    _write_metrics(run_dir)


def _assert_pngs(paths, run_dir):
    assert paths, "nothing was written"
    for p in paths:
        p = os.fspath(p)
        assert os.path.dirname(p) == os.fspath(run_dir / "plots")
        assert p.endswith(".png") and os.path.getsize(p) > 0
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    leftovers = [f for f in os.listdir(run_dir / "plots") if f.endswith(".tmp")]
    assert leftovers == []


def test_plot_run_2d(tmp_path):
    _write_2d_run(tmp_path)
    paths = plot_run(tmp_path)
    _assert_pngs(paths, tmp_path)
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(["solution_u.png", "error_u.png", "solution_p.png",
                            "decomposition.png", "loss.png", "l2_error.png"])
    assert sorted(os.listdir(tmp_path / "plots")) == names


def test_plot_run_4d_space_time_and_3d_decomposition(tmp_path):
    axes = [np.linspace(0, 1, 4), np.linspace(0, 1, 5), np.linspace(0, 1, 3),
            np.linspace(0, 2, 3)]
    shape = tuple(len(a) for a in axes)
    u = np.arange(np.prod(shape), dtype=float).reshape(shape)
    write_solution(tmp_path / "solution.nc", ("x", "y", "z", "t"), axes, {"u": u},
                   errors={"u": -u * 1e-3 + 0.01})
    # 2 x 2 x 2 boxes on 3 ranks: four distinct columns in (x, y), owners differ along z.
    lower, upper, owner = [], [], []
    for k in range(2):
        for j in range(2):
            for i in range(2):
                lower.append([i / 2, j / 2, k / 2])
                upper.append([(i + 1) / 2, (j + 1) / 2, (k + 1) / 2])
                owner.append((i + 2 * j + 4 * k) % 3)
    _write_decomposition(tmp_path, lower, upper, owner, ["x", "y", "z"], [2, 2, 2])
    paths = plot_run(tmp_path)
    _assert_pngs(paths, tmp_path)
    assert len(paths) == 3


def test_plot_run_1d(tmp_path):
    x = np.linspace(-1, 1, 33)
    write_solution(tmp_path / "solution.nc", ("x",), [x], {"u": x ** 2})
    _write_decomposition(tmp_path, [[-1], [0]], [[0], [1]], [0, 1], ["x"], [2])
    paths = plot_run(tmp_path)
    _assert_pngs(paths, tmp_path)
    assert len(paths) == 2


def test_empty_run_dir(tmp_path):
    assert plot_run(tmp_path) == []
    assert not (tmp_path / "plots").exists()


def test_missing_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        plot_run(tmp_path / "nope")


def test_metrics_only_and_truncated_line(tmp_path):
    _write_metrics(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 200, "loss": 0.')  # job killed mid-write
    paths = plot_run(tmp_path)
    assert [os.path.basename(p) for p in paths] == ["loss.png", "l2_error.png"]
    _assert_pngs(paths, tmp_path)


def test_read_metrics(tmp_path):
    _write_metrics(tmp_path)
    series = read_metrics(tmp_path / "metrics.jsonl")
    steps, loss = series["loss"]
    assert len(steps) == 19 and 30 not in steps  # the NaN line is dropped
    assert np.all(np.diff(steps) > 0)
    assert len(series["l2_u"][0]) == 4
    assert "step" not in series


def test_reduce_to_2d():
    axes = {"x": np.arange(4.0), "y": np.arange(5.0), "z": np.arange(3.0),
            "t": np.array([0.0, 1.0])}
    data = np.arange(4 * 5 * 3 * 2, dtype=float).reshape(4, 5, 3, 2)
    names, coords, sliced, notes = reduce_to_2d(axes, data)
    assert names == ["x", "y"]
    np.testing.assert_array_equal(sliced, data[:, :, 1, -1])
    assert notes == ["t = 1", "z = 1"]

    names, _, sliced, _ = reduce_to_2d({"x": np.arange(4.0), "t": np.arange(3.0)},
                                       data[:, 0, :, 0])
    assert names == ["x", "t"] and sliced.shape == (4, 3)

"""Does decomposition help? One network against 4 and 8 experts of about the same total
parameter count, with the same points in all, the same optimizer and the same time budget.

For a problem (``--problem``) each variant changes only the deck's grid, the network width
and the point counts of the shipped deck:

* the width is chosen so that experts x parameters per expert is closest to the deck's total;
* interior points: the deck's total over all experts, shared equally; boundary points: the
  deck's total over all boundary faces (and initial faces) shared over the variant's faces;
  interface points per interface as in the deck (only decompositions have them);
* the stages of the deck, with the time budget ``--minutes`` split over them (``max_minutes``
  per stage; the step counts are raised so that time, not steps, ends each stage).

Every run is one process (``--ranks``, default 1; all experts batched) with the same torch
thread count, one after the other, so the comparison is of the method, not of the number of
processes. Reads the final relative L2 errors (``errors.json``), the best evaluation in
``metrics.jsonl``, steps and step time, and writes BENCHMARKS.md, section "Does decomposition
help? (PROBLEM)".

    python bench/decomposition_study.py --problem kovasznay --minutes 8
    python bench/decomposition_study.py --problem beltrami --minutes 8
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import machine_note, uptime  # noqa: E402
from report import update_section  # noqa: E402

from ddpinn.decomposition import decompose  # noqa: E402
from ddpinn.io.config import load  # noqa: E402
from ddpinn.problem import box_of  # noqa: E402

# problem -> deck, the grids compared (first: one network), the error keys reported
PROBLEMS = {
    "kovasznay": {"deck": "cases/kovasznay_precise.toml",
                  "grids": [[1, 1], [2, 2], [4, 2]], "errors": ("l2_velocity", "l2_p")},
    "beltrami": {"deck": "cases/beltrami3d.toml",
                 "grids": [[1, 1, 1, 1], [2, 2, 1, 1], [2, 2, 2, 1]],
                 "errors": ("l2_velocity", "l2_p")},
}


def mlp_parameters(inputs: int, outputs: int, width: int, depth: int) -> int:
    """Weights and biases of a tanh MLP with ``depth`` hidden layers of ``width``."""
    return (inputs + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * outputs


def boundary_faces(cfg, grid) -> int:
    """Faces of all experts that carry boundary or initial points."""
    box = box_of(cfg)
    time_axis = cfg.axis_names.index("t") if cfg.has_time else None
    d = decompose(box, grid, [n in cfg.domain.periodic for n in cfg.axis_names], time_axis)
    return int(d.boundary_face_mask(time_axis).sum())


def variants(problem: str) -> list:
    """One dict per grid: grid, experts, width, parameters (total), interior and boundary
    points per expert / face."""
    spec = PROBLEMS[problem]
    cfg = load(ROOT / spec["deck"])
    from ddpinn.pdes import PDES

    outputs = len(PDES[cfg.pde.name](cfg.space_dim).outputs)
    inputs, depth = len(cfg.axis_names), cfg.network.depth
    experts0 = int(np.prod(cfg.decomposition.grid))
    total_params = experts0 * mlp_parameters(inputs, outputs, cfg.network.width, depth)
    interior = cfg.points.interior * experts0
    boundary = cfg.points.boundary * boundary_faces(cfg, cfg.decomposition.grid)
    out = []
    for grid in spec["grids"]:
        n = int(np.prod(grid))
        width = min(range(2, 1024), key=lambda w: abs(n * mlp_parameters(
            inputs, outputs, w, depth) - total_params))
        out.append({"grid": grid, "experts": n, "width": width, "depth": depth,
                    "parameters": n * mlp_parameters(inputs, outputs, width, depth),
                    "interior": int(round(interior / n)),
                    "boundary": int(round(boundary / boundary_faces(cfg, grid)))})
    return out


def command(problem: str, v: dict, args, out: Path) -> list:
    spec = PROBLEMS[problem]
    cfg = load(ROOT / spec["deck"])
    sets = [f'output.dir="{out}"', "output.plots=false",
            f"decomposition.grid={v['grid']}", f"network.width={v['width']}",
            f"points.interior={v['interior']}", f"points.boundary={v['boundary']}",
            f"parallel.threads={args.threads}"]
    weights = [s.steps for s in cfg.stages]
    # time ends each stage: the budget in proportion to the deck's step counts, with the
    # first (warm-up) stage held to its own steps when it is a short Adam warm-up
    if len(cfg.stages) > 1 and cfg.stages[0].optimizer == "adam" and \
            cfg.stages[1].optimizer == "gauss_newton":
        shares = [None] + [1.0] * (len(cfg.stages) - 1)
    else:
        shares = [w / sum(weights) for w in weights]
    for i, share in enumerate(shares):
        if share is None:
            continue
        sets += [f"stages.{i}.max_minutes={args.minutes * share:.3f}",
                 f"stages.{i}.steps={100 * cfg.stages[i].steps}"]
    cmd = ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", "ddpinn.cli", "run",
           spec["deck"], "--quiet", "--overwrite"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def result(problem: str, v: dict, out: Path) -> dict:
    keys = PROBLEMS[problem]["errors"]
    errors = json.loads((out / "errors.json").read_text())
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
    # the evaluations during training and the final one (errors.json)
    evals = [(r["step"], r[keys[0]]) for r in rows if keys[0] in r]
    evals.append((rows[-1]["step"] + 1, errors[keys[0]]))
    step_time = sum(r.get("time_step", 0.0) for r in rows)
    return {**v, "errors": {k: errors[k] for k in keys}, "steps": rows[-1]["step"] + 1,
            "step_time": step_time, "best": min(evals, key=lambda e: e[1]),
            "loss": rows[-1]["loss"]}


def table(problem: str, results: list, args) -> str:
    keys = PROBLEMS[problem]["errors"]
    head = ("| experts (grid) | width | parameters | interior / boundary points per expert / "
            "face | steps | step time | final loss | " + " | ".join(keys) +
            f" | best {keys[0]} (step) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        best = f"{r['best'][1]:.3e} ({r['best'][0]})"
        lines.append(
            f"| {r['experts']} ({'x'.join(map(str, r['grid']))}) | {r['width']} | "
            f"{r['parameters']:,} | {r['interior']} / {r['boundary']} | {r['steps']} | "
            f"{r['step_time'] / 60:.1f} min | {r['loss']:.3e} | " +
            " | ".join(f"{r['errors'][k]:.3e}" for k in keys) + f" | {best} |")
    deck = PROBLEMS[problem]["deck"]
    return "\n".join([
        f"`{deck}` with its grid, network width and point counts changed (same depth, "
        f"optimizer stages and loss weights), {args.minutes:g} minutes of training per run "
        f"(`max_minutes` over the stages after any Gauss-Newton warm-up), one run at a time, "
        f"{args.ranks} rank(s), {args.threads} torch thread(s). Errors: relative L2 on the "
        f"deck's test grid (`errors.json`); \"best\": the lowest evaluation during training or "
        f"at the end (the step count at the end: the final one).",
        "", *lines, "",
        f"Command: `python bench/decomposition_study.py --problem {problem} --minutes "
        f"{args.minutes:g} --ranks {args.ranks} --threads {args.threads}`. Machine: "
        f"{machine_note('cpu')}; `uptime` at the start: `{args.uptime}`."])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", choices=sorted(PROBLEMS), default="kovasznay")
    p.add_argument("--minutes", type=float, default=8.0, help="training time per run")
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per rank")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "decomposition_study")
    p.add_argument("--collect", action="store_true", help="report finished runs only")
    p.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = p.parse_args(argv)
    # the machine's load when the runs started (kept beside them for --collect)
    note = args.out / args.problem / "uptime.txt"
    if not args.collect:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(uptime())
    args.uptime = note.read_text().strip() if note.exists() else "n/a"
    results = []
    for v in variants(args.problem):
        out = args.out / args.problem / "x".join(map(str, v["grid"]))
        if not args.collect:
            subprocess.run(command(args.problem, v, args, out), check=True, cwd=ROOT)
        results.append(result(args.problem, v, out))
        print(json.dumps({k: results[-1][k] for k in ("grid", "width", "parameters",
                                                      "steps", "errors", "best")}))
    text = table(args.problem, results, args)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", f"Does decomposition help? ({args.problem})",
                       text)
    print(text)


if __name__ == "__main__":
    main()

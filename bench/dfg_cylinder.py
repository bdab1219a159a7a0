"""DFG benchmark 2D-1 (flow past a cylinder, Re = 20): drag, lift and pressure difference of
a trained ``cases/cylinder2d_dfg.toml`` run against the benchmark's reference values.

Trains the case (unless ``--run`` names a finished run directory), then evaluates the
quantities of interest of the deck (``[output] forces, probes, probe_differences``) from the
run's newest checkpoint in one process, and writes the table to BENCHMARKS.md (section
"Flow past a cylinder").

    python bench/dfg_cylinder.py --ranks 4              # train, about an hour on 2 cores
    python bench/dfg_cylinder.py --run runs/cylinder2d_dfg
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import update_section  # noqa: E402

CASE = ROOT / "cases" / "cylinder2d_dfg.toml"
# Schaefer & Turek (1996), test case 2D-1: reference value and the accepted interval.
REFERENCE = {"cylinder_drag": (5.5795, 5.57, 5.59), "cylinder_lift": (0.010619, 0.0104, 0.0110),
             "delta_p": (0.11752, 0.1172, 0.1176)}
TARGET = {"cylinder_drag": 0.01, "cylinder_lift": 0.10, "delta_p": 0.01}


def quantities(run_dir: Path) -> dict:
    """The deck's quantities of interest from the run's newest checkpoint (one process)."""
    from ddpinn.eval_experts import RankExperts
    from ddpinn.evaluation import choose_checkpoint
    from ddpinn.io.config import load
    from ddpinn.parallel import SerialComm
    from ddpinn.problem import build_problem
    from ddpinn.quantities_of_interest import parse_quantities
    from ddpinn.quantities_of_interest.compute import QuantityEvaluator, experts_predict

    problem = build_problem(load(CASE))
    state, path = choose_checkpoint(run_dir, None)
    experts = RankExperts(problem, SerialComm(), state)
    values = QuantityEvaluator(parse_quantities(problem.cfg.output), problem).values(
        experts_predict(experts))
    step = (state.get("scalars") or {}).get("global_step")
    return {"values": values, "checkpoint": str(path), "step": step,
            "decomposition": problem.decomposition}


def train_seconds(run_dir: Path) -> float:
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl") if line.strip()]
    return sum(r.get("time_step", 0.0) for r in rows)


def table(result: dict, run_dir: Path, ranks: int) -> str:
    v = result["values"]
    lines = ["| quantity | ddpinn | reference | relative error | target | accepted interval |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, (ref, lo, hi) in REFERENCE.items():
        rel = abs(v[name] - ref) / abs(ref)
        inside = "inside" if lo <= v[name] <= hi else "outside"
        ok = "met" if rel <= TARGET[name] else "not met"
        lines.append(f"| {name} | {v[name]:.5g} | {ref} | {rel:.2%} | {TARGET[name]:.0%}: "
                     f"{ok} | [{lo}, {hi}]: {inside} |")
    minutes = train_seconds(run_dir) / 60
    d = result["decomposition"]
    cut = int((d.volume_fraction < 1).sum())
    lines += ["", f"Trained on {ranks} ranks ({d.n_subdomains} experts on a "
              f"{'x'.join(map(str, d.grid))} grid, {cut} cut by the cylinder) "
              f"for {minutes:.1f} minutes of step time, to step {result['step']} "
              f"({Path(result['checkpoint']).name})."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--run", help="a finished run directory (skip training)")
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = p.parse_args()
    run_dir = Path(args.run) if args.run else ROOT / "runs" / "cylinder2d_dfg"
    if not args.run:
        subprocess.run(["mpiexec", "-n", str(args.ranks), sys.executable, "-m", "ddpinn.cli",
                        "run", str(CASE), "--quiet", "--set", f'output.dir="{run_dir}"'],
                       check=True, cwd=ROOT)
    result = quantities(run_dir)
    text = table(result, run_dir, args.ranks)
    print(text)
    if not args.no_write:
        command = "python bench/dfg_cylinder.py " + (f"--run {args.run}" if args.run
                                                     else f"--ranks {args.ranks}")
        update_section(ROOT / "BENCHMARKS.md", "Flow past a cylinder (DFG 2D-1)",
                       f"`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()

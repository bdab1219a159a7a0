"""Quasi-Newton stages compared: lbfgs, ssbfgs and ssbroyden after the same Adam warm-up.

Runs ``cases/poisson2d.toml`` in float64 once per optimizer (the Adam stage is the same
bits in every run), reads the final relative L2 error (``errors.json``), the loss at the end
of each stage and the stage's time (sum of ``time_step`` over its steps, from
``metrics.jsonl``), and writes the table to BENCHMARKS.md (section "Quasi-Newton stages").

    python bench/quasi_newton.py --ranks 2 --adam 1000 --steps 300

The Adam warm-up is trained once; the other optimizers resume from its checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import run_from_warmup, update_section  # noqa: E402

OPTIMIZERS = ("lbfgs", "ssbfgs", "ssbroyden")


def command(opt: str, args, out: Path) -> list:
    return ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", "ddpinn.cli", "run",
            "cases/poisson2d.toml", "--quiet", "--set", f'output.dir="{out}"',
            "--set", 'case.dtype="float64"', "--set", f"stages.0.steps={args.adam}",
            "--set", f'stages.1.optimizer="{opt}"', "--set", f"stages.1.steps={args.steps}",
            "--set", "output.plots=false", "--set", "output.eval_every=0",
            "--set", f"output.checkpoint_every={args.adam}"]


def run(opt: str, args) -> dict:
    """Train (unless ``--collect``): the first run trains Adam and keeps its checkpoint at
    the end of the warm-up; later runs resume from a copy of it (the same bits as training
    Adam again)."""
    root, out = Path(args.out), Path(args.out) / opt
    warm = root / "warmup.pt"
    cmd = None if args.collect else command(opt, args, out)
    rows = run_from_warmup(cmd, out, warm, args.adam, ROOT)
    stage = [r for r in rows if r["stage"] == 1]
    return {"opt": opt, "l2_u": json.loads((out / "errors.json").read_text())["l2_u"],
            "losses": [r["loss"] for r in stage], "times": [r["time_step"] for r in stage]}


def at_time(result: dict, seconds: float) -> str:
    """The loss when the stage's time first reaches ``seconds``, and its step."""
    t = 0.0
    for i, (loss, dt) in enumerate(zip(result["losses"], result["times"])):
        t += dt
        if t >= seconds:
            return f"{loss:.3e}" + ("" if i == len(result["losses"]) - 1 else f" (step {i})")
    return "-"


def table(results: list) -> str:
    head = ("| optimizer | loss after 50 / 100 / 150 / 200 steps | loss after the stage | "
            "relative L2 error of u | stage time (per step) | loss at lbfgs's stage time |\n"
            "| --- | --- | --- | --- | --- | --- |\n")
    ref = next((sum(r["times"]) for r in results if r["opt"] == "lbfgs"), None)
    lines = []
    for r in results:
        marks = " / ".join(f"{r['losses'][k - 1]:.3e}" for k in (50, 100, 150, 200)
                           if k <= len(r["losses"]))
        total = sum(r["times"])
        lines.append(f"| {r['opt']} | {marks} | {r['losses'][-1]:.3e} | {r['l2_u']:.3e} | "
                     f"{total:.0f} s ({total / len(r['times']):.2f} s) | "
                     f"{at_time(r, ref) if ref else '-'} |\n")
    return head + "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--adam", type=int, default=1000, help="Adam warm-up steps")
    ap.add_argument("--steps", type=int, default=300, help="quasi-Newton steps")
    ap.add_argument("--out", default="runs/bench_quasi_newton")
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated")
    ap.add_argument("--collect", action="store_true", help="read runs made earlier")
    ap.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = ap.parse_args()
    results = [run(opt, args) for opt in args.optimizers.split(",")]
    text = (f"`cases/poisson2d.toml` in float64 (2x2 experts, width 32, depth 3: 8964 "
            f"parameters), {args.adam} Adam steps then {args.steps} steps of each optimizer, "
            f"{args.ranks} ranks, one thread per rank.\n\nCommand: `python "
            f"bench/quasi_newton.py --ranks {args.ranks} --adam {args.adam} --steps "
            f"{args.steps}`.\n\n" + table(results))
    print(text)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "Quasi-Newton stages", text)


if __name__ == "__main__":
    main()

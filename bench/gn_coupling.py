"""Gauss-Newton with block-Jacobi against global (coupled, PCG) steps from the same point.

Runs ``cases/poisson2d_precise.toml``: the Adam warm-up once (its checkpoint at the end of
the warm-up is kept), then ``--steps`` Gauss-Newton steps with ``coupling = "block"`` and
with ``coupling = "global"``, each resumed from a copy of that checkpoint. Reads the loss,
the relative L2 error of u (``errors.json``, at the end), the time per step (``time_step``),
``gn_ratio``, ``gn_alpha`` and the CG iterations from ``metrics.jsonl``, and writes the
table to BENCHMARKS.md (section "Global Gauss-Newton coupling").

    python bench/gn_coupling.py --ranks 4 --adam 300 --steps 150
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from report import run_from_warmup, update_section  # noqa: E402

CASE = "cases/poisson2d_precise.toml"
COUPLINGS = ("block", "global")


def command(coupling: str, args, out: Path) -> list:
    return ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", "ddpinn.cli", "run",
            CASE, "--quiet", "--set", f'output.dir="{out}"', "--set", "output.plots=false",
            "--set", f"stages.0.steps={args.adam}", "--set", f"stages.1.steps={args.steps}",
            "--set", f'stages.1.coupling="{coupling}"',
            "--set", f"stages.1.cg_iterations={args.cg_iterations}",
            "--set", "output.eval_every=0",
            "--set", f"output.checkpoint_every={args.adam}"]


def run(coupling: str, args) -> dict:
    """Train (unless ``--collect``): the first run trains Adam and keeps its checkpoint at
    the end of the warm-up; the other resumes from a copy of it."""
    root, out = Path(args.out), Path(args.out) / coupling
    warm = root / "warmup.pt"
    cmd = None if args.collect else command(coupling, args, out)
    rows = run_from_warmup(cmd, out, warm, args.adam, ROOT)
    stage = [r for r in rows if r["stage"] == 1 and "gn_ratio" in r]
    return {"coupling": coupling, "l2_u": json.loads((out / "errors.json").read_text())["l2_u"],
            "rows": stage}


def _median(rows, key, lo, hi):
    vals = [r[key] for r in rows[lo:hi] if key in r]
    return f"{statistics.median(vals):.2f}" if vals else "-"


def at_time(rows, seconds: float) -> str:
    """The loss when the stage's time (sum of ``time_step``) first reaches ``seconds``."""
    t = 0.0
    for i, x in enumerate(rows):
        t += x["time_step"]
        if t >= seconds:
            return f"{x['loss']:.3e} (step {i + 1})"
    return "-"


def table(results: list) -> str:
    head = ("| coupling | loss after 50 / 100 / 150 / 200 steps | loss at the end | "
            "relative L2 error of u | time per step (median) | loss at block's stage "
            "time | median gn_ratio, steps 1-50 / 51-end | median gn_alpha | "
            "median CG iterations | interface mismatch at the end |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    ref = sum(x["time_step"] for x in results[0]["rows"])  # block's stage time
    lines = []
    for r in results:
        rows = r["rows"]
        marks = " / ".join(f"{rows[k - 1]['loss']:.3e}" for k in (50, 100, 150, 200)
                           if k <= len(rows))
        t = statistics.median(x["time_step"] for x in rows)
        cg = _median(rows, "gn_cg_iterations", 0, len(rows))
        lines.append(f"| {r['coupling']} | {marks} | {rows[-1]['loss']:.3e} | "
                     f"{r['l2_u']:.3e} | {t:.2f} s | {at_time(rows, ref)} | "
                     f"{_median(rows, 'gn_ratio', 0, 50)} / "
                     f"{_median(rows, 'gn_ratio', 50, len(rows))} | "
                     f"{_median(rows, 'gn_alpha', 0, len(rows))} | {cg} | "
                     f"{rows[-1].get('mismatch_space', float('nan')):.1e} |\n")
    return head + "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--adam", type=int, default=300, help="Adam warm-up steps")
    ap.add_argument("--steps", type=int, default=150, help="Gauss-Newton steps")
    ap.add_argument("--cg-iterations", type=int, default=20)
    ap.add_argument("--out", default="runs/bench_gn_coupling")
    ap.add_argument("--collect", action="store_true", help="read runs made earlier")
    ap.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS.md")
    args = ap.parse_args()
    results = [run(c, args) for c in COUPLINGS]
    text = (f"`{CASE}` (float64, 2x2 experts, width 16, depth 2), {args.adam} Adam steps, "
            f"then {args.steps} Gauss-Newton steps with each coupling from the same "
            f"checkpoint, {args.ranks} ranks, one thread per rank, cg_iterations = "
            f"{args.cg_iterations}.\n\nCommand: `python bench/gn_coupling.py --ranks "
            f"{args.ranks} --adam {args.adam} --steps {args.steps}`.\n\n" + table(results))
    print(text)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "Global Gauss-Newton coupling", text)


if __name__ == "__main__":
    main()

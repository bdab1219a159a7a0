"""Training steps with the compiled Taylor sweep (``network.compile``) against the eager engine.

Runs ``mpiexec -n 1 python -m ddpinn.cli run CASE`` with ``network.compile`` false and true
(one thread, a fixed number of Adam steps, no evaluation or checkpoints) and reads
``metrics.jsonl``: the median Adam step time after the first ``--warmup`` steps, and the
compilation (the first two steps of the compiled run less two eager steps). Cases run in
interleaved rounds (eager, compiled, eager, ...); the median over rounds is reported.

Writes BENCHMARKS.md section "Compiled Taylor sweep in training".

    python bench/compile.py                              # kovasznay and beltrami3d
    python bench/compile.py --cases kovasznay --steps 100 --rounds 1 --no-write
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import command_line, load_average, machine_note, uptime  # noqa: E402
from report import update_section  # noqa: E402


def adam_steps(case: str, compile_: bool, steps: int, out: Path) -> list:
    """Seconds of each Adam step of one run of ``case``; a compiled run starts with an empty
    compiler cache (the first run of a case on a machine: later runs reuse the cache)."""
    shutil.rmtree(out, ignore_errors=True)
    sets = [f'output.dir="{out}"', "output.plots=false", f"stages.0.steps={steps}",
            "stages.1.steps=1", "output.eval_every=0", "output.checkpoint_every=0",
            "output.log_every=1", "parallel.threads=1",
            f"network.compile={'true' if compile_ else 'false'}"]
    cmd = [shutil.which("mpiexec") or "mpiexec", "-n", "1", sys.executable, "-m", "ddpinn.cli",
           "run", str(ROOT / "cases" / f"{case}.toml"), "--quiet"]
    cmd += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(out) + "_inductor_cache"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{case} (compile={compile_}) failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
    return [r["time_step"] for r in rows if r.get("stage") == 0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="kovasznay,beltrami3d")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps per run")
    ap.add_argument("--warmup", type=int, default=20, help="first steps left out")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    t_start, up, load0 = time.perf_counter(), uptime(), load_average()
    lines = [f"One rank, one thread, {args.steps} Adam steps per run; step = median "
             f"`time_step` of `metrics.jsonl` after {args.warmup} steps, median of "
             f"{args.rounds} interleaved rounds. Compilation = the compiled run's first two "
             "steps less two eager steps (the first runs eagerly and records the "
             "second-order channels, the second compiles the sweep with them), with an empty "
             "compiler cache. Break-even = compilation / time saved per step.", "",
             "| case | experts x points | network | eager step | compiled step | speed-up "
             "| compilation | break-even |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="ddpinn_compile_") as tmp:
        for case in args.cases.split(","):
            step = {False: [], True: []}
            first = {False: [], True: []}
            for r in range(args.rounds):
                for flag in (False, True):
                    out = Path(tmp) / f"{case}_{flag}_{r}"
                    t = adam_steps(case, flag, args.steps, out)
                    step[flag].append(statistics.median(t[args.warmup:]))
                    first[flag].append(sum(t[:2]))
                    if r == 0 and flag:
                        cfg = (out / "config.toml").read_text()
                        shape = _shape(out, cfg)
            eager, comp = (statistics.median(step[f]) for f in (False, True))
            compile_s = statistics.median(first[True]) - statistics.median(first[False])
            saved = eager - comp
            even = f"{compile_s / saved:,.0f} steps" if saved > 0 else "never"
            lines.append(f"| {case} | {shape[0]} | {shape[1]} | {eager * 1e3:.1f} ms | "
                         f"{comp * 1e3:.1f} ms | {eager / comp:.2f}x | {compile_s:.1f} s | "
                         f"{even} |")
            print(lines[-1], flush=True)
    lines += ["", f"Command: `{command_line('bench/compile.py', argv)}` "
              f"({time.perf_counter() - t_start:.0f} s). {machine_note('cpu')}. `uptime` at the "
              f"start: `{up}`; load average at the end: {load_average()} (start: {load0})."]
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "Compiled Taylor sweep in training", body)
    return 0


def _shape(run_dir: Path, cfg_text: str) -> tuple:
    """("E x N", "depth x width act") of a finished run, from its decomposition and config."""
    import tomllib

    cfg = tomllib.loads(cfg_text)
    decomp = json.loads((run_dir / "decomposition.json").read_text())
    experts = 1
    for n in decomp["grid"]:
        experts *= n
    net, pts = cfg["network"], cfg["points"]
    return (f"{experts} x {pts['interior']} interior",
            f"{net['depth']} x {net['width']} {net['activation']}")


if __name__ == "__main__":
    sys.exit(main())

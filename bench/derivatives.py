"""Derivative engine (Taylor mode vs nested autograd) and batched vs looped experts.

Throughput = collocation points per second through residual, loss and backward pass (one
training step's derivative work), one torch thread. Repetitions of the variants being compared
are interleaved (A, B, A, B, ...) and the median is reported, so background load affects both
alike. Writes the table to BENCHMARKS.md, section "Derivative engine and batched experts".

    python bench/derivatives.py                       # defaults below (a few minutes)
    python bench/derivatives.py --reps 3 --no-write   # quicker, print only
    python bench/derivatives.py --profile beltrami    # op-level time breakdown of one step
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from machine import command_line, load_average, uptime  # noqa: E402
from report import update_section  # noqa: E402

from ddpinn.nn import BatchedMLP, Fields, TaylorFields, make_fields  # noqa: E402
from ddpinn.pdes import PDES  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PROBLEMS = {"poisson3d": ("poisson", 3), "beltrami": ("beltrami", 3)}


def build(problem: str, experts: int, dtype, width: int, depth: int, seed: int = 0):
    """PDE, experts on a grid of unit boxes, points (E, N, d) drawn inside them."""
    name, dim = PROBLEMS[problem]
    pde = PDES[name](dim)
    d = len(pde.axes)
    lower = torch.stack([torch.full((d,), float(e)) for e in range(experts)])
    model = BatchedMLP(list(range(experts)), lower.numpy(), (lower + 1).numpy(), pde.n_out,
                       width=width, depth=depth, activation="tanh", seed=seed, dtype=dtype)
    return pde, model, lower.to(dtype)


def points(lower, n: int, dtype, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return lower[:, None, :] + torch.rand(lower.shape[0], n, lower.shape[1], dtype=dtype,
                                          generator=g)


def step(models, xs, pde, engine: str) -> None:
    """Residual of every model at its points, mean-square loss, backward (grads cleared)."""
    total = 0
    for model, x0 in zip(models, xs):
        x = x0.detach().requires_grad_(True)  # as in training (grad_of needs it)
        if engine == "compiled":  # network.compile = true
            f = make_fields(model, x, pde.axes, pde.outputs, "taylor", compile=True)
        elif engine == "taylor":
            f = TaylorFields(model, x, pde.axes, pde.outputs)
        else:
            f = Fields(x, model(x), pde.axes, pde.outputs)
        res = pde.residual(f, pde.params)
        total = total + res.pow(2).mean()
    total.backward()
    for model in models:
        for p in model.parameters():
            p.grad = None


def interleaved(variants: dict, reps: int) -> dict:
    """{label: fn}: one warm-up each, then ``reps`` rounds A, B, ...

    Returns {label: (median wall seconds, median CPU seconds of this process)}; CPU time is
    less sensitive to time slicing on a loaded machine (one thread: CPU time ~ work)."""
    for fn in variants.values():
        fn()
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(reps):
        for k, fn in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in variants}


ENGINES = ("autograd", "taylor", "compiled")


def engines(problem, dtype, experts, n, width, depth, reps):
    """Points / s (wall, CPU) of each engine; and the seconds of the compiled engine's first
    two steps (compilation: the sweep, then the sweep with the channels it learned)."""
    pde, model, lower = build(problem, experts, dtype, width, depth)
    x = points(lower, n, dtype)
    # A training process compiles one model; this one compiles a model per row, more than
    # torch._dynamo's recompile limit for one function (beyond it: eager, silently).
    torch._dynamo.reset()
    t0 = time.perf_counter()
    for _ in range(2):
        step([model], [x], pde, "compiled")
    compile_s = time.perf_counter() - t0
    t = interleaved({e: (lambda e=e: step([model], [x], pde, e)) for e in ENGINES}, reps)
    return {e: (experts * n / w, experts * n / c) for e, (w, c) in t.items()}, compile_s


def batched_vs_looped(problem, dtype, experts, n, width, depth, reps):
    """E experts as one BatchedMLP vs a Python loop over E one-expert BatchedMLPs (same
    weights, same points), with each engine."""
    pde, model, lower = build(problem, experts, dtype, width, depth)
    x = points(lower, n, dtype)
    singles = [BatchedMLP([e], lower[e:e + 1].numpy(), (lower[e:e + 1] + 1).numpy(), pde.n_out,
                          width=width, depth=depth, activation="tanh", seed=0, dtype=dtype)
               for e in range(experts)]
    xs = [x[e:e + 1] for e in range(experts)]
    variants = {}
    for eng in ("autograd", "taylor"):
        variants[("batched", eng)] = lambda eng=eng: step([model], [x], pde, eng)
        variants[("looped", eng)] = lambda eng=eng: step(singles, xs, pde, eng)
    t = interleaved(variants, reps)
    return {k: (experts * n / w, experts * n / c) for k, (w, c) in t.items()}


def profile(problem, dtype, experts, n, width, depth):
    from torch.profiler import ProfilerActivity, profile as torch_profile

    pde, model, lower = build(problem, experts, dtype, width, depth)
    x = points(lower, n, dtype)
    for eng in ENGINES:
        step([model], [x], pde, eng)
        step([model], [x], pde, eng)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step([model], [x], pde, eng)
        print(f"\n### {problem} {eng}\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


#: glibc keeps freed memory instead of returning it to the system at every free: otherwise
#: a step's large temporaries are page-faulted in anew at each step, by an amount that depends
#: on the allocator's state (nested autograd's step time varied from 0.59 to 1.03 s between
#: runs of this script; Taylor mode's by much less). Both engines run under the same setting.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                     "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def main(argv=None) -> int:
    if argv is None and not all(k in os.environ for k in KEEP_FREED_MEMORY):
        # glibc reads these at start-up: run again with them.
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, **KEEP_FREED_MEMORY})
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--points", type=int, default=2048, help="points per expert")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--loop-experts", type=int, default=16)
    ap.add_argument("--loop-points", default="1024,128,32",
                    help="points per expert in the loop test (1024 x 16 = 8 x 2048 points)")
    ap.add_argument("--sizes", default="512,8192",
                    help="more points per expert for beltrami float32 (how the ratio scales)")
    ap.add_argument("--profile", choices=sorted(PROBLEMS))
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.profile:
        profile(args.profile, torch.float32, args.experts, args.points, args.width, args.depth)
        return 0
    started = uptime()
    t_start = time.perf_counter()
    net = f"width {args.width}, depth {args.depth}, tanh"
    malloc = ", ".join(f"`{k}={v}`" for k, v in KEEP_FREED_MEMORY.items())
    lines = [f"Engines: {args.experts} experts x {args.points} points each (other counts where "
             f"the column says so), {net}; throughput in "
             "collocation points / s through residual + mean-square loss + backward "
             f"(median of {args.reps} interleaved repetitions, 1 thread). Wall clock is the "
             "headline figure; the CPU-time column (median `process_time` of the same "
             "repetitions) is less affected by time slicing on a loaded machine.", "",
             f"glibc keeps freed memory ({malloc}, set by the script). `compiled` is the "
             "Taylor engine with `network.compile = true` (one `torch.compile`-d sweep; "
             "its compilation, the first two steps, is timed "
             "apart and not in the rates).", "",
             "| problem | dtype | points / expert | nested autograd (pts/s) | Taylor (pts/s) "
             "| Taylor, compiled (pts/s) | speed-up Taylor: wall, CPU | speed-up compiled: wall,"
             " CPU | compilation (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = [(p, dt, args.points) for p in PROBLEMS for dt in args.dtypes.split(",")]
    rows += [("beltrami", "float32", int(n)) for n in args.sizes.split(",") if n]
    for problem, dt, n in rows:
        r, compile_s = engines(problem, DTYPES[dt], args.experts, n, args.width, args.depth,
                               args.reps)
        (aw, ac), (tw, tc), (cw, cc) = (r[e] for e in ENGINES)
        lines.append(f"| {problem} | {dt} | {n} | {aw:,.0f} | {tw:,.0f} | {cw:,.0f} | "
                     f"{tw / aw:.2f}x, {tc / ac:.2f}x | {cw / aw:.2f}x, {cc / ac:.2f}x | "
                     f"{compile_s:.0f} |")
        print(lines[-1], flush=True)
    lines += ["", f"Batched vs looped: {args.loop_experts} experts per rank as one BatchedMLP "
              f"vs a Python loop over {args.loop_experts} one-expert BatchedMLPs (same total "
              f"points), Beltrami residual, {net}, float32, points / s.", "",
              "| points per expert | engine | looped (pts/s) | batched (pts/s) | speed-up, wall |"
              " speed-up, CPU time |",
              "| --- | --- | --- | --- | --- | --- |"]
    for n in (int(v) for v in args.loop_points.split(",")):
        r = batched_vs_looped("beltrami", torch.float32, args.loop_experts, n, args.width,
                              args.depth, args.reps)
        for eng in ("autograd", "taylor"):
            (lw, lc), (bw, bc) = r[("looped", eng)], r[("batched", eng)]
            lines.append(f"| {n} | {eng} | {lw:,.0f} | {bw:,.0f} | {bw / lw:.2f}x | "
                         f"{bc / lc:.2f}x |")
            print(lines[-1], flush=True)
    lines += ["", f"Command: `{command_line('bench/derivatives.py', argv)}` "
              f"({time.perf_counter() - t_start:.0f} s); torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread. `uptime` at the start: `{started}`; load "
              f"average at the end: {load_average()}."]
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "Derivative engine and batched experts", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

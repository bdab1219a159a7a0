"""Achieved FLOP rate of a training step against the machine's dense matmul rate.

For each case, one rank holds all its experts (as on one rank of a run). One training step =
the solver's closure (points' forward pass with derivatives, loss, backward) + Adam's update.
Its floating-point operations are counted with ``torch.utils.flop_counter.FlopCounterMode``,
which counts matrix products only (mm, addmm, bmm, baddbmm, convolutions, attention): the
element-wise work (tanh and its derivatives, the Taylor-mode channel products, the loss,
Adam's update) is not counted, so the rate is a lower bound on the arithmetic done. The
number of elements those uncounted kernels write is reported next to it, to show how much
of the step is memory-bound element-wise work.

The reference rate is a dense matrix product at the same precision and thread count:
``torch.mm`` at a large square size (``--mm-size``, about the machine's best dense rate) and
``torch.bmm`` at the shape of the step's own hidden-layer product (experts, points, width) @
(experts, width, width).

Writes BENCHMARKS.md section "FLOP rate (DEVICE)".

    python bench/flops.py                           # poisson2d, kovasznay, beltrami3d, 1 thread
    python bench/flops.py --cases poisson2d --reps 3 --no-write
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from machine import (check_device, command_line, default_device, load_average,  # noqa: E402
                     machine_note, synchronize, uptime)
from report import update_section  # noqa: E402

from ddpinn.io.config import load  # noqa: E402
from ddpinn.parallel import SerialComm  # noqa: E402
from ddpinn.problem import build_problem  # noqa: E402
from ddpinn.training.solver import Solver  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ElementCounter(TorchDispatchMode):
    """Elements written by the kernels FlopCounterMode does not count (views excluded)."""

    def __init__(self, counted):
        super().__init__()
        self.counted = counted
        self.elements = 0
        self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket not in self.counted and not func.is_view:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.elements += t.numel()
                    self.kernels += 1
        return out


def build(case: str, device: str, dtype: str):
    """Solver of the whole case on one rank, and an Adam optimizer over its parameters."""
    cfg = load(ROOT / "cases" / f"{case}.toml", [f'case.dtype="{dtype}"'])
    solver = Solver(build_problem(cfg), SerialComm(), torch.device(device))
    opt = torch.optim.Adam(solver.parameters(), lr=1e-12)  # tiny: the step keeps its cost
    return cfg, solver, opt


def train_step(solver, opt) -> None:
    solver.closure()
    opt.step()


def count(solver, opt) -> tuple:
    """(matmul FLOPs per step, {op: FLOPs}, uncounted elements, uncounted kernels)."""
    with FlopCounterMode(display=False) as fc:
        counter = ElementCounter(set(fc.flop_registry))
        with counter:
            train_step(solver, opt)
    by_op = {str(op).split(".")[-1]: n for op, n in fc.get_flop_counts()["Global"].items()}
    return fc.get_total_flops(), by_op, counter.elements, counter.kernels


def timed(fn, reps: int, device: str) -> tuple:
    """Median (wall, CPU) seconds of ``fn`` over ``reps`` calls, after two warm-up calls.

    CPU time (of this process) is what a step costs in work: on a machine shared with other
    jobs it is less affected by time slicing than wall time. It means nothing on a GPU."""
    for _ in range(2):
        fn()
    synchronize(device)
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall), statistics.median(cpu) if device == "cpu" else float("nan")


def mm_rate(shape_a, shape_b, dtype, device: str, reps: int) -> tuple:
    """(wall, CPU-time) GFLOP/s of a matrix product: torch.mm for 2-D shapes, torch.bmm for
    batched 3-D shapes (2 m n k FLOPs per matrix)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(*shape_a, dtype=dtype, device=device, generator=g)
    b = torch.randn(*shape_b, dtype=dtype, device=device, generator=g)
    mul = torch.mm if a.dim() == 2 else torch.bmm
    out = mul(a, b)
    flops = 2 * a.numel() * b.shape[-1]
    return tuple(flops / t / 1e9 for t in timed(lambda: mul(a, b, out=out), reps, device))


def pair(wall: float, cpu: float, fmt: str) -> str:
    return format(wall, fmt) + (" / " + format(cpu, fmt) if cpu == cpu else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="poisson2d,kovasznay,beltrami3d")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--reps", type=int, default=10, help="timed steps per case (median)")
    ap.add_argument("--mm-size", type=int, default=1024)
    ap.add_argument("--device", default=default_device(), choices=("cpu", "cuda"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    check_device(args.device)
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    started, t_start = uptime(), time.perf_counter()
    n = args.mm_size
    peak = mm_rate((n, n), (n, n), dtype, args.device, max(args.reps, 5))
    clocks = "wall / CPU time" if args.device == "cpu" else "wall"
    print(f"torch.mm {n}x{n}: {pair(*peak, '.1f')} GFLOP/s ({clocks})", flush=True)
    lines = [f"One training step (closure + Adam update) of each case with all its experts on "
             f"one rank, {args.dtype}, {args.threads} thread(s), device {args.device}; median "
             f"of {args.reps} steps. Rates are given as {clocks}"
             + (" (CPU time of the process: what the step costs in work; wall time includes "
                "time slicing when the machine is shared)" if args.device == "cpu" else "")
             + ". Matmul FLOPs counted by `FlopCounterMode` (it counts matrix products only: "
             "activations, Taylor-mode channel products, loss and Adam are not counted, so the "
             "achieved rate is a lower bound); the element-wise column gives the elements the "
             "uncounted kernels write per step. Reference rates: `torch.mm` "
             f"{n}x{n} at {pair(*peak, '.1f')} GFLOP/s, and `torch.bmm` at the step's "
             "hidden-layer shape (experts, points, width) @ (experts, width, width).", "",
             "| case | experts x points | network | step (ms) | matmul GFLOP / step | achieved "
             "GFLOP/s | of mm peak | bmm at step shape (GFLOP/s) | of that | element-wise "
             "(M elements, kernels) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- "
             "| --- |"]
    notes = []
    for case in args.cases.split(","):
        cfg, solver, opt = build(case, args.device, args.dtype)
        flops, by_op, elements, kernels = count(solver, opt)
        sec = timed(lambda: train_step(solver, opt), args.reps, args.device)
        rate = tuple(flops / t / 1e9 for t in sec)
        e, npts = solver.batch.x.shape[:2]
        width = cfg.network.width
        local = mm_rate((e, npts, width), (e, width, width), dtype, args.device,
                        max(args.reps, 20))
        lines.append(
            f"| {case} | {e} x {npts} | {cfg.network.depth} x {width} "
            f"{cfg.network.activation} | {pair(*(t * 1e3 for t in sec), '.1f')} | "
            f"{flops / 1e9:.3f} | {pair(*rate, '.2f')} | "
            f"{pair(*(r / p for r, p in zip(rate, peak)), '.1%')} | {pair(*local, '.1f')} | "
            f"{pair(*(r / p for r, p in zip(rate, local)), '.1%')} | "
            f"{elements / 1e6:.1f} M, {kernels} |")
        print(lines[-1], flush=True)
        total = sum(by_op.values())
        notes.append(f"{case}: " + ", ".join(f"{op} {v / total:.0%}" for op, v in
                                            sorted(by_op.items(), key=lambda kv: -kv[1])))
    lines += ["", "Matmul FLOPs by operator: " + "; ".join(notes) + ".", "",
              f"Command: `{command_line('bench/flops.py', argv)}` "
              f"({time.perf_counter() - t_start:.0f} s). Machine: {machine_note(args.device)}. "
              f"`uptime` at the start: `{started}`; load average at the end: {load_average()}."]
    body = "\n".join(lines)
    print("\n" + body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", f"FLOP rate ({args.device})", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

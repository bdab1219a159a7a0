"""Time to accuracy: ddpinn vs DeepXDE (PyTorch backend) on the same problems and machine.

Both codes train the same problem in float32 with the same torch thread count, each in its
own process, one after the other, until the error reaches ``--stop-at`` (default 1e-3) or a
wall-time budget is spent (``--budget``). Every ``--eval-every`` seconds of training the
relative L2 error against the exact solution is computed on the same uniform test grid; the
clock is paused while the error is computed, so the times are training time only. Reported:
time to reach relative L2 1e-2 and 1e-3 for each code and their ratio, and a plot of error vs
time.

Both codes use Adam and then L-BFGS. DeepXDE runs with its example's number of Adam
iterations; ddpinn switches to L-BFGS after its own case's number (Kovasznay: 3000, as in
``cases/kovasznay.toml``), and DeepXDE is run with that schedule too, so the ratio does not
hinge on the schedule alone.

Problems (the settings both codes share):

* ``kovasznay``: DeepXDE's example ``examples/pinn_forward/Kovasznay_flow.py`` (Re = 20 on
  [-0.5, 1] x [-0.5, 1.5], velocity on the boundary and pressure on the outflow face, 4 x 50
  tanh, 2601 domain + 400 boundary points, Adam lr 1e-3 for ``--adam-steps`` iterations, then
  L-BFGS). ddpinn uses the same network per subdomain and the same number of points in all
  (``--grid`` subdomains), with the loss and interface weights of ``cases/kovasznay.toml``.
  Error: velocity (u, v together).
* ``poisson2d``: ``cases/poisson2d.toml`` (-Laplace u = 8 pi^2 sin(2 pi x) sin(2 pi y) on the
  unit square, u = 0 on the boundary, 3 x 32 tanh, 4000 interior + 800 boundary points, loss
  weights 0.01 residual / 10 boundary, Adam lr 3e-3 halving every 1000 iterations, then
  L-BFGS). DeepXDE: one network of the same size on the same numbers of points. Error: u.

DeepXDE is not a dependency of ddpinn; install it into the environment that runs this
benchmark only:

    pip install deepxde                       # then, with DDE_BACKEND=pytorch set for you:
    python bench/deepxde_compare.py --budget 1200 --eval-every 5
    python bench/deepxde_compare.py --budget 20 --eval-every 2 --no-write     # quick check

Writes BENCHMARKS.md section "Time to accuracy vs DeepXDE (DEVICE)" and
``bench/figures/deepxde_DEVICE.png``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from machine import (check_device, command_line, default_device, load_average,  # noqa: E402
                     machine_note, uptime)
from report import update_section  # noqa: E402

TARGETS = (1e-2, 1e-3)
INSTALL = "pip install deepxde   (into the benchmark environment only; not a ddpinn dependency)"

# Shared settings. interior/boundary: totals over the whole domain.
PROBLEMS = {
    "kovasznay": dict(case="kovasznay", nu=1 / 20, width=50, depth=4, interior=2601,
                      boundary=400, lr=1e-3, decay=None, adam_steps=30000,
                      ddpinn_adam_steps=3000, components=(0, 1), label="velocity"),
    "poisson2d": dict(case="poisson2d", width=32, depth=3, interior=4000, boundary=800,
                      lr=3e-3, decay=(0.5, 1000), adam_steps=3000, components=(0,),
                      label="u"),
}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class Clock:
    """Training time with pauses (error evaluation is not training).

    ``wall``: wall-clock time; ``cpu``: CPU time of this process, which on a machine shared
    with other jobs counts the work done rather than the time slices lost to the others
    (with one thread; with several it adds up their CPU time)."""

    def __init__(self, budget: float, every: float, kind: str = "wall"):
        self.budget, self.every, self.now = budget, every, CLOCKS[kind]
        self.start = self.now()
        self.paused = 0.0
        self.next_eval = 0.0

    def elapsed(self) -> float:
        return self.now() - self.start - self.paused

    def due(self) -> bool:
        return self.elapsed() >= self.next_eval

    def spent(self) -> bool:
        return self.elapsed() >= self.budget


class Trace:
    """(training seconds, iteration, stage, error) at each evaluation."""

    def __init__(self, clock: Clock, grid: dict, components, stop_at: float = 0.0):
        self.clock, self.rows, self.stop_at = clock, [], stop_at
        self.x, self.truth = grid["x"], grid["truth"][:, components]
        self.components = list(components)

    def evaluate(self, predict, iteration: int, stage: str) -> None:
        """Pause the clock, record the relative L2 error of ``predict(x) -> (P, n_out)``."""
        t = self.clock.elapsed()
        t0 = self.clock.now()
        pred = np.asarray(predict(self.x), dtype=np.float64)[:, self.components]
        err = float(np.linalg.norm(pred - self.truth) / np.linalg.norm(self.truth))
        self.rows.append({"t": t, "iteration": iteration, "stage": stage, "error": err})
        self.clock.paused += self.clock.now() - t0
        self.clock.next_eval = t + self.clock.every

    def maybe(self, predict, iteration: int, stage: str) -> bool:
        """Evaluate when due; returns True when the budget is spent (after a last record) or
        the error has reached ``stop_at``."""
        spent = self.clock.spent()
        if spent or self.clock.due():
            self.evaluate(predict, iteration, stage)
            return spent or self.reached
        return False

    @property
    def reached(self) -> bool:
        """The last recorded error is at or below ``stop_at``."""
        return bool(self.rows) and self.rows[-1]["error"] <= self.stop_at


# -- ddpinn side --------------------------------------------------------------------------
def ddpinn_config(name: str, grid, adam_steps: int, run_dir: Path, device: str):
    from ddpinn.io.config import load

    p = PROBLEMS[name]
    n_sub = int(np.prod(grid))
    outer_faces = 2 * sum(n_sub // g for g in grid)  # 2D: subdomain faces on the boundary
    sets = [f"decomposition.grid={list(grid)}", f"network.width={p['width']}",
            f"network.depth={p['depth']}", 'network.activation="tanh"',
            f"points.interior={round(p['interior'] / n_sub)}",
            f"points.boundary={round(p['boundary'] / outer_faces)}",
            f"stages.0.steps={adam_steps}", f"stages.0.lr={p['lr']}",
            "stages.1.steps=100000000", 'case.dtype="float32"', "output.eval_every=0",
            "output.checkpoint_every=0", "output.log_every=0", "output.plots=false",
            f'output.dir="{run_dir}"', f'parallel.device="{device}"']
    if p["decay"]:
        sets += ['stages.0.schedule="exponential"', f"stages.0.decay_rate={p['decay'][0]}",
                 f"stages.0.decay_steps={p['decay'][1]}"]
    else:
        sets += ['stages.0.schedule="constant"']
    if "nu" in p:
        sets.append(f"pde.params.nu={p['nu']}")
    return load(ROOT / "cases" / f"{p['case']}.toml", sets)


def run_ddpinn(name, grid, adam_steps, budget, every, grid_file, device, out_file, clock,
               stop_at):
    import torch

    from ddpinn.parallel import SerialComm
    from ddpinn.problem import build_problem
    from ddpinn.training.solver import Solver
    from ddpinn.training.trainer import Trainer

    class BudgetSpent(Exception):
        pass

    class TracedTrainer(Trainer):
        """The trainer, with the error traced after each recorded step."""

        def _record(self, *args, **kwargs):
            super()._record(*args, **kwargs)
            stage = self.cfg.stages[self.stage_index].optimizer
            if trace.maybe(lambda x: self.solver.predict(x), self.global_step, stage):
                raise BudgetSpent

    with tempfile.TemporaryDirectory(prefix="ddpinn-vs-deepxde-") as tmp:
        cfg = ddpinn_config(name, grid, adam_steps, Path(tmp), device)
        solver = Solver(build_problem(cfg), SerialComm(), torch.device(device))
        trainer = TracedTrainer(solver, Path(tmp))
        trace = Trace(Clock(budget, every, clock), dict(np.load(grid_file)),
                      PROBLEMS[name]["components"], stop_at)
        try:
            trainer.train()
        except BudgetSpent:
            pass
        params = sum(p.numel() for p in solver.parameters())
        points = int(solver.batch.x.shape[0] * solver.batch.x.shape[1])
    Path(out_file).write_text(json.dumps({"trace": trace.rows, "parameters": params,
                                          "points_padded": points, "adam_steps": adam_steps}))


# -- DeepXDE side -------------------------------------------------------------------------
def deepxde_model(name: str):
    import deepxde as dde
    import torch

    p = PROBLEMS[name]
    if name == "kovasznay":
        re = 1 / p["nu"]
        lam = re / 2 - np.sqrt(re ** 2 / 4 + 4 * np.pi ** 2)

        def pde(x, u):
            uu, vv = u[:, 0:1], u[:, 1:2]
            ux, uy = dde.grad.jacobian(u, x, i=0, j=0), dde.grad.jacobian(u, x, i=0, j=1)
            vx, vy = dde.grad.jacobian(u, x, i=1, j=0), dde.grad.jacobian(u, x, i=1, j=1)
            px, py = dde.grad.jacobian(u, x, i=2, j=0), dde.grad.jacobian(u, x, i=2, j=1)
            lap_u = dde.grad.hessian(u, x, component=0, i=0, j=0) + \
                dde.grad.hessian(u, x, component=0, i=1, j=1)
            lap_v = dde.grad.hessian(u, x, component=1, i=0, j=0) + \
                dde.grad.hessian(u, x, component=1, i=1, j=1)
            return [uu * ux + vv * uy + px - lap_u / re, uu * vx + vv * vy + py - lap_v / re,
                    ux + vy]

        # One-argument functions: DeepXDE reads a second argument as auxiliary variables.
        def u_func(x):
            return 1 - np.exp(lam * x[:, 0:1]) * np.cos(2 * np.pi * x[:, 1:2])

        def v_func(x):
            return lam / (2 * np.pi) * np.exp(lam * x[:, 0:1]) * np.sin(2 * np.pi * x[:, 1:2])

        def p_func(x):
            return 0.5 * (1 - np.exp(2 * lam * x[:, 0:1]))

        geom = dde.geometry.Rectangle(xmin=[-0.5, -0.5], xmax=[1, 1.5])
        bcs = [dde.icbc.DirichletBC(geom, f, lambda _, on_b: on_b, component=k)
               for k, f in enumerate((u_func, v_func))]
        bcs.append(dde.icbc.DirichletBC(geom, p_func,
                                        lambda x, on_b: on_b and np.isclose(x[0], 1),
                                        component=2))
        n_out, weights = 3, None
    else:
        k = np.pi * 2

        def pde(x, u):
            lap = dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1)
            return -lap - 2 * k ** 2 * torch.sin(k * x[:, 0:1]) * torch.sin(k * x[:, 1:2])

        geom = dde.geometry.Rectangle(xmin=[0, 0], xmax=[1, 1])
        bcs = [dde.icbc.DirichletBC(geom, lambda x: np.zeros((len(x), 1)),
                                    lambda _, on_b: on_b)]
        n_out, weights = 1, [0.01, 10.0]  # residual, boundary: as cases/poisson2d.toml
    data = dde.data.PDE(geom, pde, bcs, num_domain=p["interior"], num_boundary=p["boundary"])
    net = dde.nn.FNN([2] + p["depth"] * [p["width"]] + [n_out], "tanh", "Glorot normal")
    return dde, dde.Model(data, net), weights


def run_deepxde(name, adam_steps, budget, every, grid_file, device, out_file, lbfgs_chunk,
                clock, stop_at):
    import deepxde as dde

    dde.config.set_default_float("float32")
    dde.config.set_random_seed(0)
    dde, model, weights = deepxde_model(name)
    p = PROBLEMS[name]
    grid = dict(np.load(grid_file))
    state = {"stage": "adam"}

    class Tracker(dde.callbacks.Callback):
        def on_epoch_end(self):
            it = self.model.train_state.iteration
            if trace.maybe(lambda x: self.model.predict(x.astype(np.float32)), it,
                           state["stage"]):
                self.model.stop_training = True

    decay = ("exponential", p["decay"][0] ** (1 / p["decay"][1])) if p["decay"] else None
    model.compile("adam", lr=p["lr"], decay=decay, loss_weights=weights, verbose=0)
    trace = Trace(Clock(budget, every, clock), grid, p["components"], stop_at)
    model.train(iterations=adam_steps, display_every=1000, callbacks=[Tracker()], verbose=0)
    if not (trace.clock.spent() or trace.reached):
        state["stage"] = "lbfgs"
        dde.optimizers.set_LBFGS_options(maxiter=100000000)
        # Return to the callback every few iterations, so the budget and the error are checked.
        opts = dde.optimizers.config.LBFGS_options
        opts["iter_per_step"] = lbfgs_chunk
        opts["fun_per_step"] = int(lbfgs_chunk * 1.25)
        model.compile("L-BFGS", loss_weights=weights, verbose=0)
        model.train(display_every=1, callbacks=[Tracker()], verbose=0)
    params = sum(q.numel() for q in model.net.parameters())
    Path(out_file).write_text(json.dumps({"trace": trace.rows, "parameters": params,
                                          "adam_steps": adam_steps, "version": dde.__version__}))


# -- orchestration ------------------------------------------------------------------------
def test_grid(name: str, path: Path, n: int = 101) -> None:
    """Uniform n x n grid over the domain and the exact solution there (from ddpinn's PDE)."""
    import torch

    from ddpinn.io.config import load
    from ddpinn.problem import build_problem

    p = PROBLEMS[name]
    sets = [f"pde.params.nu={p['nu']}"] if "nu" in p else []
    problem = build_problem(load(ROOT / "cases" / f"{p['case']}.toml", sets))
    lo, hi = problem.box.lower, problem.box.upper
    axes = [np.linspace(lo[i], hi[i], n) for i in range(2)]
    x = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
    truth = problem.pde.exact(torch.as_tensor(x), problem.pde.params).numpy()
    np.savez(path, x=x, truth=truth)


def run_side(side: str, name: str, adam_steps: int, args, grid_file: Path,
             out_file: Path) -> dict:
    env = {**os.environ, "DDE_BACKEND": "pytorch", "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # DeepXDE takes a visible GPU by itself
    cmd = [sys.executable, __file__, "--side", side, "--problems", name,
           "--budget", str(args.budget), "--eval-every", str(args.eval_every),
           "--threads", str(args.threads), "--device", args.device, "--grid", args.grid,
           "--lbfgs-chunk", str(args.lbfgs_chunk), "--clock", args.clock,
           "--adam-steps", str(adam_steps), "--stop-at", str(args.stop_at),
           "--side-files", str(grid_file), str(out_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the {side} run of {name} failed (exit {proc.returncode}):\n"
                 f"{proc.stderr[-3000:]}")
    return json.loads(out_file.read_text())


def runs(name: str, adam_steps: int = 0) -> list:
    """(label, code, Adam iterations) of each run of a problem.

    DeepXDE runs with its example's settings. Where ddpinn's own switch to L-BFGS comes
    earlier, DeepXDE also runs with that schedule, so the comparison does not hinge on it.
    """
    p = PROBLEMS[name]
    if adam_steps:
        return [("ddpinn", "ddpinn", adam_steps), ("deepxde", "deepxde", adam_steps)]
    ours = p.get("ddpinn_adam_steps", p["adam_steps"])
    out = [("ddpinn", "ddpinn", ours), ("deepxde", "deepxde", p["adam_steps"])]
    if ours != p["adam_steps"]:
        out.append((f"deepxde, {ours} Adam", "deepxde", ours))
    return out


def time_to(trace, target: float):
    hit = [r for r in trace if r["error"] <= target]
    return hit[0]["t"] if hit else None


def fmt_time(t) -> str:
    return f"{t:.1f} s" if t is not None else "not reached"


def figure(results: dict, path: Path, title: str, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (name, sides) in zip(axes[0], results.items()):
        for side, res in sides.items():
            tr = res["trace"]
            ax.semilogy([r["t"] for r in tr], [r["error"] for r in tr], label=side)
        for target in TARGETS:
            ax.axhline(target, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel(f"training {'wall' if args.clock == 'wall' else 'CPU'} time (s)")
        ax.set_ylabel(f"relative L2 error ({PROBLEMS[name]['label']})")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict, args, argv, started: str, t_start: float) -> str:
    clock = "wall time" if args.clock == "wall" else "CPU time of its process"
    stop = (f"until its error reaches {args.stop_at:g} or for at most" if args.stop_at else
            "for")
    lines = [f"Each code trains each problem {stop} {args.budget:g} s of {clock} (float32, "
             f"{args.threads} torch thread(s), device {args.device}, one process at a time on "
             f"the same machine); the relative L2 error on a 101 x 101 grid is taken every "
             f"{args.eval_every:g} s of training with the clock paused, so times to a target "
             f"are resolved to about {args.eval_every:g} s. ddpinn: {args.grid} subdomains, one "
             "rank; DeepXDE: one network. Ratio = DeepXDE time / ddpinn time (> 1: ddpinn "
             "faster). Adam (same learning rate) is followed by L-BFGS in both codes; DeepXDE "
             "runs with its example's Adam iteration count and, where ddpinn switches to "
             "L-BFGS earlier, also with ddpinn's.", "",
             "| problem | code | parameters | iterations (Adam + L-BFGS) | final error | best "
             "error | time to 1e-2 | time to 1e-3 |", "| --- | --- | --- | --- | --- | --- | "
             "--- | --- |"]
    ratios = []
    for name, sides in results.items():
        for side, res in sides.items():
            tr = res["trace"]
            last = tr[-1]["iteration"]
            its = (f"{res['adam_steps']} + {last - res['adam_steps']}"
                   if tr[-1]["stage"] == "lbfgs" else f"{last} + 0")
            lines.append(f"| {name} | {side} | {res['parameters']:,} | {its} | "
                         f"{tr[-1]['error']:.2e} | {min(r['error'] for r in tr):.2e} | "
                         f"{fmt_time(time_to(tr, 1e-2))} | {fmt_time(time_to(tr, 1e-3))} |")
        for label, res in sides.items():
            if res["side"] != "deepxde":
                continue
            for target in TARGETS:
                a = time_to(sides["ddpinn"]["trace"], target)
                b = time_to(res["trace"], target)
                ratio = (f"{b / a:.2f}" if a and b else
                         f"> {res['trace'][-1]['t'] / a:.2f} (ddpinn only)" if a else
                         "DeepXDE only" if b else "neither")
                ratios.append(f"{name}, {label}, {target:.0e}: {ratio}")
    version = next((r.get("version") for s in results.values() for r in s.values()
                    if r.get("version")), "?")
    png = ROOT / "bench" / "figures" / f"deepxde_{args.device}.png"
    if not args.no_write:  # a quick check leaves the committed figure alone
        figure(results, png, f"{args.device}, {args.threads} thread(s), "
               f"budget {args.budget:g} s", args)
    lines += ["", "Time-to-accuracy ratio (DeepXDE / ddpinn; \"> x\": DeepXDE had not reached "
              "it when its budget ended): " + "; ".join(ratios) + ".", "",
              f"![error vs time]({png.relative_to(ROOT)})", "",
              f"Command: `{command_line('bench/deepxde_compare.py', argv)}` "
              f"({time.perf_counter() - t_start:.0f} s), DeepXDE {version} (`{INSTALL}`), "
              f"DDE_BACKEND=pytorch. Machine: {machine_note(args.device)}. `uptime` at the "
              f"start: `{started}`; load average at the end: {load_average()}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="kovasznay,poisson2d")
    ap.add_argument("--budget", type=float, default=600, help="training seconds per code")
    ap.add_argument("--eval-every", type=float, default=None,
                    help="seconds of training between error evaluations (default budget/100)")
    ap.add_argument("--adam-steps", type=int, default=0,
                    help="Adam iterations before L-BFGS for both codes (default: DeepXDE's "
                         "example settings, and for ddpinn its own where they differ)")
    ap.add_argument("--stop-at", type=float, default=min(TARGETS),
                    help="a run stops once its error is at or below this (0: use the whole "
                         "budget)")
    ap.add_argument("--grid", default="2,2", help="ddpinn subdomains per axis")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lbfgs-chunk", type=int, default=20,
                    help="DeepXDE L-BFGS iterations between callbacks")
    ap.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                    help="wall time, or CPU time of each process (steadier on a shared machine)")
    ap.add_argument("--device", default=default_device(), choices=("cpu", "cuda"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--side", choices=("ddpinn", "deepxde"), help=argparse.SUPPRESS)
    ap.add_argument("--side-files", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.eval_every = args.eval_every or max(args.budget / 100, 1.0)
    check_device(args.device)
    if args.side:  # one code, one problem, in this process
        import torch

        torch.set_num_threads(args.threads)
        name = args.problems
        steps = args.adam_steps or PROBLEMS[name]["adam_steps"]
        grid_file, out_file = args.side_files
        if args.side == "ddpinn":
            grid = tuple(int(g) for g in args.grid.split(","))
            run_ddpinn(name, grid, steps, args.budget, args.eval_every, grid_file,
                       args.device, out_file, args.clock, args.stop_at)
        else:
            run_deepxde(name, steps, args.budget, args.eval_every, grid_file, args.device,
                        out_file, args.lbfgs_chunk, args.clock, args.stop_at)
        return 0
    if importlib.util.find_spec("deepxde") is None:
        sys.exit(f"DeepXDE is not installed in this environment ({sys.executable}).\n"
                 f"Install it for the benchmark only:  {INSTALL}")
    started, t_start = uptime(), time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ddpinn-vs-deepxde-") as tmp:
        for name in args.problems.split(","):
            if name not in PROBLEMS:
                sys.exit(f"--problems: {name!r} is not one of {', '.join(PROBLEMS)}")
            grid_file = Path(tmp) / f"{name}_grid.npz"
            test_grid(name, grid_file)
            results[name] = {}
            for label, side, steps in runs(name, args.adam_steps):
                res = run_side(side, name, steps, args, grid_file,
                               Path(tmp) / f"{name}_{side}_{steps}.json")
                results[name][label] = {**res, "side": side}
                tr = res["trace"]
                print(f"{name} {label}: {len(tr)} evaluations, final error "
                      f"{tr[-1]['error']:.2e} at {tr[-1]['t']:.1f} s, iteration "
                      f"{tr[-1]['iteration']}", flush=True)
    body = report(results, args, argv, started, t_start)
    print("\n" + body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", f"Time to accuracy vs DeepXDE ({args.device})",
                       body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to accuracy: ddpinn vs DeepXDE (PyTorch backend) on the same problems and machine.

Both codes train the same problem in float32 with the same torch thread count, each in its
own process, one after the other, until the error reaches ``--stop-at`` (default 1e-3) or a
wall-time budget is spent (``--budget``). Every ``--eval-every`` seconds of training the
relative L2 error against the exact solution is computed on the same uniform test grid; the
clock is paused while the error is computed, so the times are training time only. Reported:
time to reach relative L2 1e-2, 1e-3 and 1e-5 for each code and their ratio, and a plot of
error vs time.

``--runs`` chooses the runs of each problem: ``ddpinn`` (the float32 deck, Adam then L-BFGS),
``precise`` (ddpinn's ``*_precise.toml`` deck: float64, Adam then Gauss-Newton with the experts
coupled, its own network and points; it stops at ``--precise-stop-at``), ``deepxde`` (DeepXDE's
example schedule) and ``deepxde-ours`` (DeepXDE with ddpinn's number of Adam iterations, where it
differs). With ``--stop-at 0`` DeepXDE trains for its whole budget, and the report gives its best
error and the time the precise ddpinn run took to reach it.

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
    python bench/deepxde_compare.py --runs precise,deepxde-ours --stop-at 0 --clock cpu

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

TARGETS = (1e-2, 1e-3, 1e-5)
RUNS = ("ddpinn", "precise", "deepxde", "deepxde-ours")
INSTALL = "pip install deepxde   (into the benchmark environment only; not a ddpinn dependency)"

# Shared settings. interior/boundary: totals over the whole domain.
PROBLEMS = {
    "kovasznay": dict(case="kovasznay", nu=1 / 20, width=50, depth=4, interior=2601,
                      boundary=400, lr=1e-3, decay=None, adam_steps=30000,
                      ddpinn_adam_steps=3000, components=(0, 1), label="velocity",
                      precise="kovasznay_precise"),
    "poisson2d": dict(case="poisson2d", width=32, depth=3, interior=4000, boundary=800,
                      lr=3e-3, decay=(0.5, 1000), adam_steps=3000, components=(0,),
                      label="u", precise="poisson2d_precise"),
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
def ddpinn_config(name: str, grid, adam_steps: int, run_dir: Path, device: str,
                  precise: bool = False, precise_sets=()):
    from ddpinn.io.config import load

    p = PROBLEMS[name]
    if precise:  # the deck as shipped (float64, its network, points and stages), unbounded
        sets = ["stages.1.steps=100000000", "stages.1.max_minutes=100000", "output.eval_every=0",
                "output.checkpoint_every=0", "output.log_every=0", "output.plots=false",
                f'output.dir="{run_dir}"', f'parallel.device="{device}"']
        sets += [f"pde.params.nu={p['nu']}"] if "nu" in p else []
        sets += list(precise_sets)  # --precise-set: the user's overrides come last
        return load(ROOT / "cases" / f"{p['precise']}.toml", sets)
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
               stop_at, precise=False, precise_sets=()):
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
        cfg = ddpinn_config(name, grid, adam_steps, Path(tmp), device, precise, precise_sets)
        adam_steps = cfg.stages[0].steps
        solver = Solver(build_problem(cfg), SerialComm(), torch.device(device))
        trainer = TracedTrainer(solver, Path(tmp))
        # DeepXDE's clock starts after model.compile has built its Adam; the first torch.optim
        # optimizer of a process imports torch._dynamo (about 1 s), so build one here too.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        trace = Trace(Clock(budget, every, clock), dict(np.load(grid_file)),
                      PROBLEMS[name]["components"], stop_at)
        try:
            trainer.train()
        except BudgetSpent:
            pass
        params = sum(p.numel() for p in solver.parameters())
        points = int(solver.batch.x.shape[0] * solver.batch.x.shape[1])
    Path(out_file).write_text(json.dumps({
        "trace": trace.rows, "parameters": params, "points_padded": points,
        "adam_steps": adam_steps, "dtype": cfg.case.dtype,
        "second": cfg.stages[-1].optimizer}))


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
                                          "adam_steps": adam_steps, "version": dde.__version__,
                                          "dtype": "float32", "second": "lbfgs"}))


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
           "--adam-steps", str(adam_steps),
           "--stop-at", str(args.precise_stop_at if side == "precise" else args.stop_at),
           "--side-files", str(grid_file), str(out_file)]
    cmd += [f"--precise-set={s}" for s in args.precise_set]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the {side} run of {name} failed (exit {proc.returncode}):\n"
                 f"{proc.stderr[-3000:]}")
    return json.loads(out_file.read_text())


def runs(name: str, adam_steps: int = 0, chosen=RUNS) -> list:
    """(label, side, Adam iterations) of each chosen run of a problem.

    DeepXDE runs with its example's settings (``deepxde``). Where ddpinn's own switch to
    L-BFGS comes earlier, DeepXDE also runs with that schedule (``deepxde-ours``), so the
    comparison does not hinge on it. ``precise`` takes its Adam steps from its deck.
    """
    p = PROBLEMS[name]
    ours = adam_steps or p.get("ddpinn_adam_steps", p["adam_steps"])
    theirs = adam_steps or p["adam_steps"]
    table = {"ddpinn": ("ddpinn", "ddpinn", ours),
             "precise": (f"ddpinn, {p['precise']}", "precise", 0),
             "deepxde": ("deepxde", "deepxde", theirs),
             "deepxde-ours": (f"deepxde, {ours} Adam", "deepxde", ours)}
    out = [table[k] for k in chosen if k != "deepxde-ours" or ours != theirs]
    if "deepxde-ours" in chosen and "deepxde" not in chosen and ours == theirs:
        out.append(table["deepxde"])
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


def ratio_text(ours, theirs, target: float) -> str | None:
    """DeepXDE time / ddpinn time to ``target`` (traces), or what stands in for it."""
    a, b = time_to(ours, target), time_to(theirs, target)
    if a and b:
        return f"{b / a:.2f}"
    if a:
        return f"> {theirs[-1]['t'] / a:.2f} (ddpinn only)"
    return "DeepXDE only" if b else None


def best_lines(sides: dict, name: str) -> list:
    """DeepXDE's best error per run, and when each ddpinn run reached it."""
    out = []
    for label, res in sides.items():
        if res["side"] != "deepxde":
            continue
        best = min(res["trace"], key=lambda r: r["error"])
        hits = []
        for other, mine in sides.items():
            if mine["side"] == "deepxde":
                continue
            t = time_to(mine["trace"], best["error"])
            hits.append(f"{other} at {fmt_time(t)}" + (f" (ratio {best['t'] / t:.1f})"
                                                        if t else ""))
        out.append(f"{name}, {label}: best error {best['error']:.2e} at {best['t']:.1f} s; "
                   + ", ".join(hits))
    return out


def report(results: dict, args, argv, started: str, t_start: float) -> str:
    clock = "wall time" if args.clock == "wall" else "CPU time of its process"
    stop = (f"until its error reaches {args.stop_at:g} or for at most" if args.stop_at else
            "for")
    shipped = ("with " + ", ".join(f"`{s}`" for s in args.precise_set) if args.precise_set
               else "as shipped")
    lines = [f"Each run trains its problem {stop} {args.budget:g} s of {clock} "
             f"({args.threads} torch thread(s), device {args.device}, one process at a time on "
             f"the same machine); the relative L2 error on a 101 x 101 grid is taken every "
             f"{args.eval_every:g} s of training with the clock paused, so times to a target "
             f"are resolved to about {args.eval_every:g} s. ddpinn: {args.grid} subdomains, one "
             "rank; DeepXDE: one network. Ratio = DeepXDE time / ddpinn time (> 1: ddpinn "
             "faster). The float32 runs use Adam (same learning rate) then L-BFGS in both "
             "codes; DeepXDE runs with its example's Adam iteration count and, where ddpinn "
             "switches to L-BFGS earlier, also with ddpinn's. The `*_precise` runs are ddpinn's "
             f"precise decks {shipped} (float64, Adam then Gauss-Newton with the experts "
             f"coupled), stopped at {args.precise_stop_at:g}.", "",
             "| problem | code | precision | parameters | iterations (Adam + second stage) | "
             "final error | best error | " + " | ".join(f"time to {t:.0e}" for t in TARGETS)
             + " |", "| --- " * (7 + len(TARGETS)) + "|"]
    ratios, bests = [], []
    for name, sides in results.items():
        for side, res in sides.items():
            tr = res["trace"]
            last = tr[-1]["iteration"]
            its = (f"{res['adam_steps']} + {last - res['adam_steps']} {res['second']}"
                   if tr[-1]["stage"] != "adam" else f"{last} + 0")
            times = " | ".join(fmt_time(time_to(tr, t)) for t in TARGETS)
            lines.append(f"| {name} | {side} | {res['dtype']} | {res['parameters']:,} | {its} | "
                         f"{tr[-1]['error']:.2e} | {min(r['error'] for r in tr):.2e} | "
                         f"{times} |")
        for label, res in sides.items():
            if res["side"] != "deepxde":
                continue
            for ours, mine in sides.items():
                if mine["side"] == "deepxde":
                    continue
                for target in TARGETS:
                    text = ratio_text(mine["trace"], res["trace"], target)
                    if text:
                        ratios.append(f"{name}, {ours} vs {label}, {target:.0e}: {text}")
        bests += best_lines(sides, name)
    version = next((r.get("version") for s in results.values() for r in s.values()
                    if r.get("version")), "?")
    png = ROOT / "bench" / "figures" / (f"deepxde_{args.device}"
                                        + ("_precise" if "precise" in args.runs else "")
                                        + ".png")
    if not args.no_write:  # a quick check leaves the committed figure alone
        figure(results, png, f"{args.device}, {args.threads} thread(s), "
               f"budget {args.budget:g} s", args)
    lines += ["", "Time-to-accuracy ratio (DeepXDE / ddpinn; \"> x\": DeepXDE had not reached "
              "it when its budget ended; targets neither reached are left out): "
              + "; ".join(ratios) + ".", "",
              "DeepXDE's best error and the time each ddpinn run took to reach it: "
              + "; ".join(bests) + ".", "",
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
    ap.add_argument("--runs", default="ddpinn,deepxde,deepxde-ours",
                    help=f"comma-separated runs of each problem, of: {', '.join(RUNS)}")
    ap.add_argument("--precise-stop-at", type=float, default=1e-6,
                    help="the precise run stops once its error is at or below this")
    ap.add_argument("--precise-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the precise decks (as 'ddpinn run --set'; "
                         "repeatable), e.g. stages.0.steps=50")
    ap.add_argument("--side", choices=("ddpinn", "precise", "deepxde"),
                    help=argparse.SUPPRESS)
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
        if args.side in ("ddpinn", "precise"):
            grid = tuple(int(g) for g in args.grid.split(","))
            run_ddpinn(name, grid, steps, args.budget, args.eval_every, grid_file,
                       args.device, out_file, args.clock, args.stop_at,
                       precise=args.side == "precise", precise_sets=args.precise_set)
        else:
            run_deepxde(name, steps, args.budget, args.eval_every, grid_file, args.device,
                        out_file, args.lbfgs_chunk, args.clock, args.stop_at)
        return 0
    if importlib.util.find_spec("deepxde") is None:
        sys.exit(f"DeepXDE is not installed in this environment ({sys.executable}).\n"
                 f"Install it for the benchmark only:  {INSTALL}")
    chosen = tuple(args.runs.split(","))
    if set(chosen) - set(RUNS):
        sys.exit(f"--runs: {sorted(set(chosen) - set(RUNS))} not among {', '.join(RUNS)}")
    started, t_start = uptime(), time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ddpinn-vs-deepxde-") as tmp:
        for name in args.problems.split(","):
            if name not in PROBLEMS:
                sys.exit(f"--problems: {name!r} is not one of {', '.join(PROBLEMS)}")
            grid_file = Path(tmp) / f"{name}_grid.npz"
            test_grid(name, grid_file)
            results[name] = {}
            for label, side, steps in runs(name, args.adam_steps, chosen):
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
        # The precise decks get their own section beside the float32 comparison.
        which = ", precise decks" if "precise" in chosen else ""
        update_section(ROOT / "BENCHMARKS.md",
                       f"Time to accuracy vs DeepXDE{which} ({args.device})", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

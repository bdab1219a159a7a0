"""``ddpinn run``: set up, check the run directory, train, write the outputs.

Launched on every rank (``mpiexec -n 4 ddpinn run case.toml``). Every check (case file,
decomposition, memory, run directory, lock, resume checkpoint) is agreed on by all ranks
before rank 0 writes anything; a set-up error is printed once by rank 0 and every rank exits
with :data:`EXIT_CONFIG`. An exception, ``SystemExit`` or ``KeyboardInterrupt`` on one rank
alone ends the whole job (``MPI_Abort``).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from ddpinn import __version__
from ddpinn.parallel.errors import (EXIT_CONFIG, EXIT_REQUEUE, EXIT_RUNTIME, CollectiveExit,
                                    DDPINNError, agree, end_job_on_lone_exit,
                                    install_abort_hook)

log = logging.getLogger("ddpinn")

# Where a run keeps a reference it computed (spectral solver), reused by --resume.
REFERENCE_FILE = "reference.nc"
# The prediction at a reference's scattered points (beside solution.nc).
REFERENCE_POINTS_FILE = "solution_at_reference.nc"


def setup_logging(rank: int, quiet: bool = False) -> None:
    level = logging.WARNING if (rank != 0 or quiet) else logging.INFO
    fmt = "%(asctime)s ddpinn %(levelname)s %(message)s" if rank == 0 else \
        f"%(asctime)s ddpinn[rank {rank}] %(levelname)s %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S", stream=sys.stderr)


def fail(comm, message: str, code: int):
    """Collective. Rank 0 prints ``message`` once; every rank exits with ``code``."""
    if comm.rank == 0:
        sys.stderr.write(f"ddpinn: error: {message}\n")
        sys.stderr.flush()
    raise CollectiveExit(code)


def setup(args, comm):
    """Collective. Config, problem and rank-count checks; errors agreed on all ranks."""
    from ddpinn.io.config import load
    from ddpinn.parallel.replicas import check_replicas
    from ddpinn.problem import build_problem

    error, cfg, problem = None, None, None
    try:
        cfg = load(args.case, args.set)
        problem = build_problem(cfg)
        n_sub = problem.decomposition.n_subdomains
        ranks = getattr(args, "ranks", None) or comm.size
        check_replicas(ranks, cfg.parallel.replicas, n_sub)
    except Exception as exc:  # every failure here is reported collectively
        error = exc
    agree(comm, error)
    return cfg, problem


def resolved_toml(cfg) -> str:
    import tomli_w

    def clean(obj):
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if v is not None}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    return tomli_w.dumps(clean(cfg.to_dict()))


def decomposition_record(problem, owner) -> dict:
    d = problem.decomposition
    return {"axis_names": list(d.box.names), "grid": list(d.grid),
            "lower": d.lower.tolist(), "upper": d.upper.tolist(),
            "owner": [int(r) for r in owner],
            "periodic": list(d.periodic), **shape_record(problem)}


def shape_record(problem, n_points: int = 1500) -> dict:
    """For a cut decomposition: each subdomain's inside volume fraction and points on the
    shape's boundary (space axes; a fixed sample), which the decomposition plot draws."""
    if problem.shape is None:
        return {}
    import numpy as np

    pts, _, _ = problem.shape.sample_boundary(n_points, np.random.default_rng(0))
    return {"volume_fraction": [float(f) for f in problem.decomposition.volume_fraction],
            "boundary_points": np.round(pts, 6).tolist()}


def check_slurm_world(comm) -> None:
    """Fail fast when srun started N one-rank MPI worlds instead of one N-rank world.

    That is what a wrong ``--mpi`` plugin does: every task initialises MPI alone. (A launcher
    such as mpiexec inside an allocation starts fewer Slurm tasks than ranks, which is fine.)
    """
    ntasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1")))
    if os.environ.get("SLURM_STEP_ID") is not None and comm.size == 1 and ntasks > 1:
        raise ValueError(
            f"Slurm started {ntasks} tasks but MPI sees a world of 1: srun's MPI "
            f"plugin does not match this MPI; launch with 'srun --mpi=pmi2' (or --mpi=pmix "
            f"for a PMIx-built MPI), see 'srun --mpi=list'")


# -- the run directory ------------------------------------------------------------------------
@dataclass
class RunStart:
    """How this start uses its run directory (the same on every rank but ``lock``)."""

    run_dir: Path
    run_id: str
    fields: dict
    state: dict | None  # the checkpoint to resume, or None
    resume: Path | None
    plan: object = None  # rank 0: the RunPlan (files to move aside, ...)
    lock: object = None  # rank 0: the RunLock held for the life of the job
    created: bool = False  # rank 0: this start made the directory

    @property
    def meta(self) -> dict:
        """What every checkpoint of the run carries."""
        from ddpinn.io.rundir import fingerprint

        return {"run_id": self.run_id, "identity": fingerprint(self.fields),
                "identity_fields": self.fields}


def open_run_dir(comm, cfg, problem, solver, resume, overwrite) -> RunStart:
    """Collective. Make and lock the run directory (rank 0), decide fresh / resume /
    overwrite, load and check the resume checkpoint on every rank. Writes nothing but the
    directory and its lock file; errors are agreed on and raised as DDPINNError everywhere.
    """
    from ddpinn.io import checkpoint, rundir
    from ddpinn.training.trainer import check_shapes

    run_dir = Path(cfg.output.dir)
    fields = rundir.identity_fields(cfg, problem.pde.params)
    start, error = RunStart(run_dir, "", fields, None, None), None
    if comm.rank == 0:
        try:
            start.created = not run_dir.exists()
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                start.lock = rundir.RunLock(run_dir)
                start.lock.acquire()
            except OSError as exc:
                raise rundir.RunDirError(f"field 'output.dir' = {str(run_dir)!r} cannot be "
                                         f"used: {exc.strerror or exc}") from None
            start.plan = rundir.plan_run(run_dir, fields, resume, overwrite)
            start.state, start.resume = start.plan.state, start.plan.resume
            start.run_id = start.plan.run_id
        except Exception as exc:
            error = exc
    try:
        agree(comm, error)
        start.run_id, path = comm.bcast((start.run_id, start.resume))
        try:
            if comm.rank != 0 and path is not None:
                start.state, start.resume = checkpoint.load(path), Path(path)
            if start.state is not None:
                stacked = checkpoint.gather_sids(start.state, solver.sids)
                check_shapes(stacked, start.state["shared"],
                             dict(solver.model.named_parameters()), dict(solver.shared))
        except Exception as exc:
            error = exc
        agree(comm, error)
    except DDPINNError:
        if comm.rank == 0:
            abandon(start)
        raise
    return start


def abandon(start: RunStart) -> None:
    """Rank 0, after a failed set-up: release the lock, and remove the directory if this
    start made it (it is empty but for the lock file)."""
    if start.lock is None:
        return
    start.lock.release()
    if start.created:
        from ddpinn.io.rundir import LOCK_FILE

        (start.run_dir / LOCK_FILE).unlink(missing_ok=True)
        try:
            start.run_dir.rmdir()
        except OSError:
            pass


def write_start(start: RunStart, cfg, problem, solver) -> None:
    """Rank 0, after every check passed: move an older run aside, write the run record,
    config and decomposition, drop the metrics of a run that starts again."""
    from ddpinn.io import rundir
    from ddpinn.io.atomic import atomic_write_text

    run_dir, plan = start.run_dir, start.plan
    if plan.aside:
        dest = rundir.move_aside(run_dir, plan.aside, plan.aside_id)
        log.warning("--overwrite: moved the previous run's %d files to %s", len(plan.aside),
                    dest)
    if plan.later:
        dest = rundir.move_aside(run_dir, [p.relative_to(run_dir) for p in plan.later],
                                 plan.run_id)
        log.warning("resuming at an earlier checkpoint: moved this run's %d later checkpoints "
                    "to %s", len(plan.later), dest)
    rundir.write_run_record(run_dir, plan, start.fields, cfg.case.name)
    atomic_write_text(run_dir / "config.toml", resolved_toml(cfg))
    atomic_write_text(run_dir / "decomposition.json",
                      json.dumps(decomposition_record(problem, solver.owner)))
    metrics = run_dir / rundir.METRICS_FILE
    if start.state is None and metrics.exists():
        metrics.unlink()


# -- the command ------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from ddpinn.parallel import world

    comm = world()
    install_abort_hook(comm)
    setup_logging(comm.rank, args.quiet)
    try:
        return _run(args, comm)
    except CollectiveExit:
        raise
    except (SystemExit, KeyboardInterrupt) as exc:  # on this rank alone: end the job
        end_job_on_lone_exit(comm, exc)
        raise


def _start(args, comm):
    """Collective. Case, problem, solver and run directory of a run, or a clean exit on bad
    input: ``(cfg, problem, solver, start, threads, set-up seconds of the problem)``."""
    from ddpinn.parallel.device import choose_device, set_threads
    from ddpinn.training.memory import check_memory
    from ddpinn.training.solver import Solver

    try:
        check_slurm_world(comm)
    except ValueError as exc:
        if os.environ.get("SLURM_PROCID", "0") == "0":  # N lone worlds: one message
            sys.stderr.write(f"ddpinn: error: {exc}\n")
        raise CollectiveExit(EXIT_CONFIG) from None
    try:
        t_problem = time.perf_counter()
        cfg, problem = setup(args, comm)
        t_problem = time.perf_counter() - t_problem
        error = None
        try:
            check_memory(cfg, problem, comm)  # collective: refuses a set-up that cannot fit
            # First: a node collective that every rank reaches (choose_device may raise).
            threads = set_threads(cfg.parallel.threads, comm, cfg.parallel.wait)
            device = choose_device(cfg.parallel.device, comm)
            solver = Solver(problem, comm, device)
        except Exception as exc:
            error = exc
        agree(comm, error)
        start = open_run_dir(comm, cfg, problem, solver, args.resume, args.overwrite)
    except DDPINNError as exc:
        fail(comm, str(exc), EXIT_CONFIG)
    if comm.rank == 0:
        write_start(start, cfg, problem, solver)
    comm.barrier()
    return cfg, problem, solver, start, threads, t_problem


def _run(args, comm) -> int:
    from ddpinn.training.evaluate import evaluate_all, make_test_grid
    from ddpinn.training.flow_diagnostics import energy_diagnostics
    from ddpinn.training.trainer import Preempted, Trainer

    cfg, problem, solver, start, threads, t_problem = _start(args, comm)
    run_dir = start.run_dir
    dtypes = " then ".join(k for k, _ in groupby(st.dtype for st in cfg.stages))
    log.info("ddpinn %s: case %r, PDE %s, %d subdomains on %d ranks (%d threads each), %s; "
             "run %s in %s", __version__, cfg.case.name, problem.pde.name,
             problem.decomposition.n_subdomains, comm.size, threads, dtypes or cfg.case.dtype,
             start.run_id[:8], run_dir)
    _log_footprint(comm, solver, {"problem": t_problem, **solver.setup_seconds})
    try:
        grid = make_test_grid(problem, cfg.output.grid or None, run_dir / REFERENCE_FILE, comm)
    except DDPINNError as exc:
        fail(comm, str(exc), EXIT_CONFIG)
    times = grid.axes[problem.time_axis] if problem.time_axis is not None else None
    quantities, probe_series = run_quantities(problem, solver, comm, times)
    trainer = Trainer(solver, run_dir, grid, start.meta, quantities)
    # Preemption and time limits (Slurm --signal, scontrol requeue): checkpoint at the next
    # step boundary on every rank, then exit with EXIT_REQUEUE.
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, trainer.request_stop)
    try:
        if start.state is not None:
            trainer.restore(start.state)
            start.state = None  # the optimizer holds what it needs
            log.info("resumed from %s at step %d", start.resume, trainer.global_step)
            note = trainer.finished_note()
            if note:
                log.warning(note)
        t0 = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - t0
        _log_footprint(comm, solver)
        every = cfg.output.checkpoint_every
        if every and trainer.global_step % every:
            trainer.save_checkpoint()  # the final state, unless just saved
        result = evaluate_all(solver, grid)  # on rank 0, None elsewhere
        qoi = quantities() if quantities is not None else {}
        series = probe_series() if probe_series is not None else None
        diagnostics = energy_diagnostics(solver, grid.axes[-1], cfg.output.reference_n) \
            if problem.pde.energy_diagnostics else None
        flow = _flow_fields(problem, solver, grid)
    except DDPINNError as exc:
        fail(comm, str(exc), EXIT_RUNTIME)
    except Preempted:
        log.warning("checkpoint written at step %d; exiting with status %d (requeue)",
                    trainer.global_step, EXIT_REQUEUE)
        comm.barrier()
        raise CollectiveExit(EXIT_REQUEUE) from None
    if comm.rank == 0:
        if diagnostics is not None:
            _write_diagnostics(problem, grid, diagnostics, run_dir)
        _write_outputs(cfg, problem, grid, result.pred, result.errors, run_dir, comm.size,
                       elapsed, solver.dtype, qoi, result.at_reference, series, flow)
    comm.barrier()
    return 0


def run_quantities(problem, solver, comm, times=None):
    """The quantities of interest of the case as collective callables: () -> {name: float}
    (the same on every rank; a time-series probe's value at the last of ``times``) and
    () -> ProbeSeries on rank 0 (None elsewhere) at ``times`` (T,); each None when the case
    has no quantities, or no time-series probes."""
    from ddpinn.quantities_of_interest import parse_quantities
    from ddpinn.quantities_of_interest.compute import QuantityEvaluator, solver_predict

    q = parse_quantities(problem.cfg.output)
    if not q:
        return None, None
    evaluator = QuantityEvaluator(q, problem, times)  # the same points on every rank
    series = (lambda: evaluator.series(solver.predict)) if evaluator.series_names else None
    return lambda: evaluator.values(solver_predict(solver), comm), series


def _write_diagnostics(problem, grid, diagnostics, run_dir):
    """``diagnostics.nc``: E(t), -dE/dt, 2 nu enstrophy of the networks and the reference's."""
    from ddpinn.io.flow_diagnostics import DIAGNOSTICS_FILE, write_diagnostics
    from ddpinn.references import read_reference_netcdf

    cached = run_dir / REFERENCE_FILE
    reference = read_reference_netcdf(cached) if cached.is_file() else None
    summary = write_diagnostics(run_dir / DIAGNOSTICS_FILE, diagnostics, reference,
                                {"nu": float(problem.pde.params["nu"]), "pde": problem.pde.name,
                                 "reference": grid.source})
    for k, v in summary.items():
        log.info("%s = %.3e", k.replace("_", " "), v)


def _log_footprint(comm, solver, setup_seconds=None) -> None:
    """Collective. Rank 0 logs memory per rank (and set-up times), max / mean over ranks."""
    from ddpinn.training.footprint import (format_memory, format_times, over_ranks,
                                           rank_footprint)

    memory = over_ranks(comm, rank_footprint(solver))
    times = over_ranks(comm, setup_seconds) if setup_seconds else None
    when = "at start" if setup_seconds else "after training"
    log.info("memory per rank %s (max / mean over %d ranks): %s", when, comm.size,
             format_memory(memory))
    if times:
        log.info("set-up (max / mean over ranks): %s", format_times(times))


def _flow_fields(problem, solver, grid):
    """Collective. |omega| and 2 nu S_ij S_ij of a 3D flow on the test grid (NaN outside a
    shaped domain), or None (another PDE; on ranks other than 0)."""
    from ddpinn.training.flow_diagnostics import flow_fields, is_3d_flow

    if not is_3d_flow(problem.pde):
        return None
    inside = grid.inside
    values = flow_fields(solver, grid.points if inside is None else grid.points[inside])
    if values is None or inside is None:
        return values
    full = {}
    for name, v in values.items():
        full[name] = np.full(len(grid.points), np.nan)
        full[name][inside] = v
    return full


def _write_outputs(cfg, problem, grid, pred, errors, run_dir, n_ranks, elapsed, dtype,
                   qoi=None, at_reference=None, series=None, flow=None):
    from ddpinn.io.netcdf import write_solution
    from ddpinn.training.precision import dtype_name

    shape = grid.shape
    fields = {n: pred[:, k].reshape(shape) for k, n in enumerate(problem.pde.outputs)}
    # derived fields of a 3D flow (vorticity magnitude, dissipation rate) beside the outputs
    fields.update({n: v.reshape(shape) for n, v in (flow or {}).items()})
    truth = grid.grid_truth  # None for a reference at scattered points (errors only)
    errs = {n: (pred[:, k] - truth[:, k]).reshape(shape)
            for k, n in enumerate(problem.pde.outputs)} if truth is not None else None
    attrs = {"case": cfg.case.name, "pde": problem.pde.name,
             "pde_outputs": ",".join(problem.pde.outputs),
             "decomposition_grid": list(problem.decomposition.grid),
             "n_subdomains": problem.decomposition.n_subdomains, "n_ranks": n_ranks,
             "interface_conditions": " | ".join(str(c) for c in problem.stage_conditions)
             if any(c != problem.conditions for c in problem.stage_conditions)
             else str(problem.conditions),
             "reference": grid.source, "training_seconds": float(elapsed), **errors,
             **{f"qoi_{k}": v for k, v in (qoi or {}).items()}}
    mask = grid.inside.reshape(shape) if grid.inside is not None else None
    # In the run's final precision (the last stage's): f4 variables after a float32 run.
    write_solution(run_dir / "solution.nc", problem.box.names, grid.axes, fields, errs, attrs,
                   dtype=dtype_name(dtype), mask=mask)
    write_extra_outputs(cfg, problem, grid, pred, run_dir, attrs, at_reference, series)
    table = {**errors, "quantities": qoi} if qoi else errors
    (run_dir / "errors.json").write_text(json.dumps(table, indent=1) + "\n")
    for k, v in errors.items():
        log.info("relative L2 error %s = %.3e", k[3:], v)
    for k, v in (qoi or {}).items():
        log.info("%s = %.6g", k, v)
    if cfg.output.plots:
        from ddpinn.io.plots import plot_run

        plot_run(run_dir)
    log.info("done in %.1f s; outputs in %s", elapsed, run_dir)


def write_extra_outputs(cfg, problem, grid, pred, run_dir, attrs, at_reference=None,
                        series=None) -> list:
    """Rank 0: the outputs beside ``solution.nc``: ``solution_at_reference.nc`` (a reference
    at scattered points, ``at_reference`` (Q, n_out) the prediction there), ``probes.nc``
    (``series``: time-series probes) and the VTK files (``output.vtk``; ``pred`` (P, n_out)
    on the grid). Returns the paths written."""
    from ddpinn.io.points_file import write_at_reference
    from ddpinn.io.probes import PROBES_FILE, write_probe_series

    names, outputs, written = problem.box.names, problem.pde.outputs, []
    if grid.scattered is not None and at_reference is not None:
        written.append(run_dir / REFERENCE_POINTS_FILE)
        write_at_reference(written[-1], names, grid.scattered, outputs, at_reference,
                           grid.truth, attrs)
    if series is not None:
        space = [n for a, n in enumerate(names) if a != problem.time_axis]
        written.append(run_dir / PROBES_FILE)
        write_probe_series(written[-1], series, space, outputs, attrs)
        log.info("time series of probes %s at %d times in %s", ", ".join(series.names),
                 len(series.times), PROBES_FILE)
    if cfg.output.vtk:
        from ddpinn.io.vtk import write_vtk

        written += write_vtk(run_dir, names, grid.axes, outputs, pred, problem.time_axis,
                             grid.inside)
    return written

"""``ddpinn eval``: a trained run's experts at chosen points or on a new grid.

::

    ddpinn eval RUN --points nodes.csv [--out FILE] [--derivatives] [--errors FILE]
    ddpinn eval RUN --grid 201,201 [--out FILE]
    mpiexec -n 4 ddpinn eval RUN --points nodes.nc

The experts are those of run directory ``RUN``: its ``config.toml`` and its newest readable
checkpoint in ``RUN/checkpoints`` (or ``--checkpoint PATH``). Each point is evaluated by the
expert of the subdomain that contains it; a point on an interface belongs to the subdomain on
its upper side (:mod:`ddpinn.decomposition.locate`), the same rule on any rank count and the
one ``solution.nc`` is made with. Under ``mpiexec -n N`` each rank loads and evaluates the
experts the partition gives it (ranks beyond the number of subdomains hold none;
:mod:`ddpinn.eval_experts`); rank 0 reads the points, gathers the values and writes. Every error is agreed on by all ranks,
printed once by rank 0 as ``ddpinn: error: ...``, and every rank exits with status 2.

Output (``--out``; default ``RUN/eval_<stem>.csv`` or ``.nc`` as the points file, and
``RUN/eval_grid_<NX>x<NY>.nc`` for ``--grid``): the coordinates, every output of the PDE,
with ``--derivatives`` their first derivatives (``u_x``, ``u_t``, ...), and where there are
reference values (columns of the points file named like the outputs; on a grid the exact
solution, or the reference the PDE family computes: Cole-Hopf for Burgers, the spectral solver
for Taylor-Green) the pointwise error ``<name>_error`` = prediction - reference. The relative L2 and
maximum absolute error per field go into the NetCDF file's global attributes (``l2_u``,
``max_abs_u``), into ``--errors FILE`` (JSON) and into the one JSON summary line printed on
stdout. Outputs known up to a constant (pressure) are compared after removing the mean, per
time value when every time value has two points at least, else over all points.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ddpinn.eval_experts import RankExperts
from ddpinn.parallel.errors import (EXIT_CONFIG, CollectiveExit, DDPINNError, agree,
                                    end_job_on_lone_exit, install_abort_hook)

log = logging.getLogger("ddpinn")

INTERFACE_SIDE = "upper"  # the side an interface point takes (ddpinn.decomposition.locate)


def add_eval_parser(sub) -> None:
    """Register ``ddpinn eval`` with the command line's subparsers."""
    q = sub.add_parser("eval", help="evaluate a trained run at points of a file or on a grid "
                                    "(launch on any number of ranks)")
    q.add_argument("run", help="run directory (config.toml, checkpoints/)")
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--points", metavar="FILE",
                       help="CSV (header of column names) or NetCDF (1D variables) with the "
                            "case's axes; columns named like the outputs are references")
    where.add_argument("--grid", metavar="NX,NY,...",
                       help="a uniform grid of the case's box, points per axis")
    q.add_argument("--out", metavar="FILE",
                   help="output .csv or .nc (default RUN/eval_<points stem>.csv|.nc, "
                        "RUN/eval_grid_<NX>x<NY>.nc)")
    q.add_argument("--checkpoint", metavar="PATH",
                   help="checkpoint to load (default: the newest readable in RUN/checkpoints)")
    q.add_argument("--derivatives", action="store_true",
                   help="also the first derivatives of every output (u_x, u_y, ...)")
    q.add_argument("--errors", metavar="FILE", help="also write the errors as JSON here")
    q.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="precision of the evaluation (default float64, whatever the case's "
                        "training precision: the trained parameters are cast exactly)")
    q.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where to evaluate (default cpu)")
    q.add_argument("--quiet", action="store_true", help="warnings only on stderr")
    q.set_defaults(func=cmd_eval)


# -- set-up ------------------------------------------------------------------------------------
@dataclass
class Request:
    """What to evaluate and where to write it (the same on every rank)."""

    cfg: object
    problem: object
    out: Path
    grid_shape: list | None = None  # --grid: points per axis
    points: np.ndarray | None = None  # (P, dim), after the points are read (rank 0 first)
    reference: dict = field(default_factory=dict)  # rank 0: name -> (P,)
    source: str = ""
    inside: np.ndarray | None = None  # (P,) bool in a non-box domain: the points in it


def parse_grid(text: str, axis_names) -> list:
    """``"101,51"`` -> [101, 51]: one integer >= 2 per axis of the case.

    Raises ValueError with the message for the user."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        shape = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--grid {text!r}: give integers separated by commas, one per axis "
                         f"({', '.join(axis_names)})") from None
    if len(shape) != len(axis_names):
        raise ValueError(f"--grid {text!r} has {len(shape)} "
                         f"{'entry' if len(shape) == 1 else 'entries'} but the case has "
                         f"{len(axis_names)} axes ({', '.join(axis_names)})")
    if any(n < 2 for n in shape):
        raise ValueError(f"--grid {text!r}: every axis needs 2 points at least")
    return shape


def default_out(run_dir: Path, points: str | None, grid_shape, points_format: str) -> Path:
    """``RUN/eval_<stem>.csv|.nc`` (as the points file) or ``RUN/eval_grid_<NX>x<NY>.nc``."""
    if grid_shape is not None:
        return run_dir / f"eval_grid_{'x'.join(map(str, grid_shape))}.nc"
    ext = ".nc" if points_format == "netcdf" else ".csv"
    return run_dir / f"eval_{Path(points).stem}{ext}"


def read_request(args) -> Request:
    """Config, problem and output path of ``ddpinn eval`` (every rank); errors as exceptions
    with the message for the user."""
    from ddpinn.io.config import load
    from ddpinn.io.points_file import file_format, out_format
    from ddpinn.problem import build_problem

    run_dir = Path(args.run)
    config = run_dir / "config.toml"
    if not run_dir.is_dir():
        raise ValueError(f"{str(run_dir)!r} is not a run directory (no such directory)")
    if not config.is_file():
        raise ValueError(f"{str(run_dir)!r} is not a run directory: it has no config.toml")
    cfg = load(config)
    problem = build_problem(cfg)
    shape = parse_grid(args.grid, problem.box.names) if args.grid is not None else None
    fmt = file_format(args.points) if args.points is not None else "netcdf"
    out = Path(args.out) if args.out else default_out(run_dir, args.points, shape, fmt)
    out_format(out)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {str(out)!r}: directory {str(out.parent)!r} does not "
                         f"exist")
    if args.errors and not Path(args.errors).parent.is_dir():
        raise ValueError(f"cannot write --errors {args.errors!r}: its directory does not exist")
    return Request(cfg, problem, out, shape)


def read_targets(req: Request, points_path: str | None) -> None:
    """Rank 0: fill ``req`` with the points (and references) of the file or the grid."""
    from ddpinn.decomposition.locate import outside
    from ddpinn.geometry import grid_points
    from ddpinn.io.points_file import read_points

    import torch

    pde, box = req.problem.pde, req.problem.box
    if req.grid_shape is not None:
        axes, req.points = grid_points(box, req.grid_shape)
        req.source = f"grid {'x'.join(map(str, req.grid_shape))}"
        req.inside = _inside(req.problem, req.points)
        truth = None
        if pde.has_exact:
            truth = pde.exact(torch.as_tensor(req.points), pde.params).numpy()
        elif pde.has_computed_reference:
            values, _ = pde.computed_reference(axes, pde.params, None,
                                               req.problem.cfg.output.reference_n)
            truth = np.asarray(values).reshape(len(req.points), -1)
        if truth is not None:
            req.reference = {n: truth[:, k] for k, n in enumerate(pde.outputs)}
        return
    pts = read_points(points_path, box.names, pde.outputs)
    req.points, req.reference, req.source = pts.points, pts.reference, pts.source
    out = outside(pts.points, box.lower, box.upper)
    inside = _inside(req.problem, pts.points)
    bad = np.flatnonzero(out if inside is None else out | ~inside)
    if len(bad):
        first = ", ".join(f"{n}={float(v)!r}"
                          for n, v in zip(box.names, pts.points[bad[0]]))
        box_text = " x ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(box.lower, box.upper))
        if inside is not None:
            box_text = f"(the case's domain.shape within {box_text})"
        raise ValueError(f"points file {points_path!r}: {len(bad)} of {len(pts.points)} "
                         f"points lie outside the domain {box_text}, the first (point "
                         f"{bad[0]}) at {first}")


def _inside(problem, points: np.ndarray) -> np.ndarray | None:
    """(P,) bool, the points in a non-box domain (``problem.shape``); None for a box."""
    shape = getattr(problem, "shape", None)
    if shape is None:
        return None
    space = [a for a in range(problem.box.dim) if a != problem.time_axis]
    return np.asarray(shape.inside(points[:, space]), dtype=bool)


def choose_checkpoint(run_dir: Path, requested: str | None):
    """Rank 0: the checkpoint to use, loaded: (state, path): the requested one, else the
    newest readable checkpoint of the directory's run (``run.json``; files of other runs
    are left out). Raises CheckpointError."""
    from ddpinn.io import checkpoint, rundir

    if requested:
        return checkpoint.load(requested), Path(requested)
    record = rundir.read_run_record(run_dir)
    paths = checkpoint.list_checkpoints(run_dir / "checkpoints") if record is None else \
        rundir.own_checkpoints(run_dir, record["run_id"])
    if not paths:
        raise checkpoint.CheckpointError(f"run directory {str(run_dir)!r} has no checkpoint "
                                         f"in {str(run_dir / 'checkpoints')!r}")
    return checkpoint.load_newest(paths)


# -- errors ----------------------------------------------------------------------------------
def gauge_groups(times: np.ndarray | None, n: int) -> np.ndarray:
    """Groups whose means are removed from gauge outputs: (n,) ints. Per time value when the
    points have a time axis and every time value has two points at least, else one group."""
    if times is not None:
        values, group, counts = np.unique(times, return_inverse=True, return_counts=True)
        if len(values) and counts.min() >= 2:
            return group.ravel()
    return np.zeros(n, dtype=np.int64)


def point_errors(pde, pred: dict, reference: dict, times=None):
    """Pointwise and summary errors of the outputs that have reference values.

    Parameters
    ----------
    pde : PDE (``gauge_outputs``, ``error_groups``)
    pred : dict name -> ndarray (P,), the predictions
    reference : dict name -> ndarray (P,), some of the outputs
    times : ndarray (P,) or None, the time coordinate (groups for gauge outputs)

    Returns
    -------
    diff : dict name -> ndarray (P,), prediction - reference (means removed for gauge outputs)
    errors : dict, ``l2_<name>`` (relative L2 error), ``max_abs_<name>`` per field, and
        ``l2_<group>`` for every error group whose outputs all have references
    """
    diff, errors = {}, {}
    n = len(next(iter(reference.values()))) if reference else 0
    groups = gauge_groups(times, n)
    counts = np.bincount(groups) if n else np.zeros(0)
    ref_adj = {}
    for name, ref in reference.items():
        p, r = np.asarray(pred[name], np.float64), np.asarray(ref, np.float64)
        if name in pde.gauge_outputs:
            p = p - (np.bincount(groups, weights=p) / counts)[groups]
            r = r - (np.bincount(groups, weights=r) / counts)[groups]
        diff[name], ref_adj[name] = p - r, r
        errors[f"l2_{name}"] = float(np.linalg.norm(p - r) / max(np.linalg.norm(r), 1e-300))
        errors[f"max_abs_{name}"] = float(np.max(np.abs(p - r)))
    for group, names in pde.error_groups.items():
        if all(k in diff for k in names):
            num = np.sqrt(sum(np.sum(diff[k] ** 2) for k in names))
            den = np.sqrt(sum(np.sum(ref_adj[k] ** 2) for k in names))
            errors[f"l2_{group}"] = float(num / max(den, 1e-300))
    return diff, errors


# -- the command -----------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from ddpinn.parallel import world
    from ddpinn.run import setup_logging

    comm = world()
    install_abort_hook(comm)
    setup_logging(comm.rank, args.quiet)
    try:
        return _eval(args, comm)
    except CollectiveExit:
        raise
    except (SystemExit, KeyboardInterrupt) as exc:  # on this rank alone: end the job
        end_job_on_lone_exit(comm, exc)
        raise


def _collect(comm, fn):
    """Collective. Run ``fn()`` on every rank and agree on any error it raised."""
    out, error = None, None
    try:
        out = fn()
    except Exception as exc:  # every failure here is reported collectively
        error = exc
    agree(comm, error)
    return out


def _eval(args, comm) -> int:
    from ddpinn.io import checkpoint
    from ddpinn.parallel.device import choose_device
    from ddpinn.run import fail

    try:
        req = _collect(comm, lambda: read_request(args))
        loaded = {}

        def first_rank():  # the points and the checkpoint, read once
            if comm.rank == 0:
                read_targets(req, args.points)
                loaded["state"], loaded["path"] = choose_checkpoint(Path(args.run),
                                                                    args.checkpoint)
        _collect(comm, first_rank)
        points, inside, path = comm.bcast((req.points, req.inside, loaded.get("path")))

        def build():
            state = loaded["state"] if comm.rank == 0 else checkpoint.load(path)
            loaded["step"] = (state.get("scalars") or {}).get("global_step")
            loaded["shared"] = {k[len("param/"):]: float(v) for k, v in
                                (state.get("shared") or {}).items() if k.startswith("param/")}
            device = choose_device(args.device, comm)
            return RankExperts(req.problem, comm, state, device, args.dtype)
        experts = _collect(comm, build)
        loaded.pop("state", None)
        values = experts.predict(points if inside is None else points[inside],
                                 args.derivatives)
        if values is not None and inside is not None:  # NaN outside a non-box domain
            values = _expand(values, inside)
        summary = _collect(comm, lambda: _write(args, req, experts, values, loaded)
                           if comm.rank == 0 else None)
    except DDPINNError as exc:
        fail(comm, str(exc), EXIT_CONFIG)
    if comm.rank == 0:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    comm.barrier()
    return 0


def _write(args, req: Request, experts: RankExperts, values: np.ndarray, loaded: dict) -> dict:
    """Rank 0: errors, the output file and the summary."""
    from ddpinn.io.points_file import out_format, write_points

    problem, pde = req.problem, req.problem.pde
    names = experts.value_names(args.derivatives)
    fields = {n: values[:, k] for k, n in enumerate(names)}
    t_axis = problem.time_axis
    times = req.points[:, t_axis] if t_axis is not None else None
    keep = req.inside if req.inside is not None else np.ones(len(req.points), bool)
    diff, errors = point_errors(pde, {n: v[keep] for n, v in fields.items()},
                                {n: v[keep] for n, v in req.reference.items()},
                                times[keep] if times is not None else None) \
        if req.reference else ({}, {})
    diff = {n: _expand(v[:, None], keep)[:, 0] for n, v in diff.items()}
    d = problem.decomposition
    attrs = {"case": problem.cfg.case.name, "pde": pde.name,
             "pde_outputs": ",".join(pde.outputs), "points": req.source,
             "checkpoint": str(loaded["path"]), "step": int(loaded.get("step") or 0),
             "dtype": args.dtype,
             "decomposition_grid": list(d.grid), "n_subdomains": d.n_subdomains,
             "interface_points": f"evaluated by the subdomain on the {INTERFACE_SIDE} side",
             **{f"param_{k}": v for k, v in loaded.get("shared", {}).items()}, **errors}
    if req.grid_shape is not None and out_format(req.out) == "netcdf":
        from ddpinn.io.netcdf import write_solution
        from ddpinn.geometry import grid_points

        axes, _ = grid_points(problem.box, req.grid_shape)
        shape = tuple(req.grid_shape)
        write_solution(req.out, problem.box.names, axes,
                       {n: v.reshape(shape) for n, v in fields.items()},
                       {n: v.reshape(shape) for n, v in diff.items()},
                       {"title": "ddpinn prediction on a grid", **attrs},
                       mask=None if req.inside is None else req.inside.reshape(shape))
    else:
        columns = {n: req.points[:, a] for a, n in enumerate(problem.box.names)}
        columns.update(fields)
        columns.update({f"{n}_error": v for n, v in diff.items()})
        write_points(req.out, columns, attrs)
    summary = {"out": str(req.out), "points": int(len(req.points)),
               "checkpoint": str(loaded["path"]), "step": attrs["step"]}
    if errors:
        summary["errors"] = errors
    if args.errors:
        from ddpinn.io.atomic import atomic_write_text

        atomic_write_text(args.errors, json.dumps({**summary, "errors": errors},
                                                  indent=1) + "\n")
    for k, v in errors.items():
        log.info("%s error %s = %.3e", "relative L2" if k.startswith("l2_") else "max abs",
                 k.split("_", 1)[1] if k.startswith("l2_") else k[len("max_abs_"):], v)
    log.info("wrote %s (%d points, %s)", req.out, len(req.points), ", ".join(names))
    return summary


def _expand(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rows ``values`` (K, n) at the K points ``keep`` (P,) marks, NaN elsewhere: (P, n)."""
    out = np.full((len(keep), values.shape[1]), np.nan)
    out[keep] = values
    return out

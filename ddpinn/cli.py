"""Command line: ``ddpinn run | eval | info | plot | metalic | reference``.

``ddpinn run`` (:mod:`ddpinn.run`) is launched on every rank (``mpiexec -n 4 ddpinn run
case.toml``); set-up errors are agreed on by all ranks, printed once by rank 0, and every rank
exits non-zero.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from ddpinn import __version__

from ddpinn.evaluation import add_eval_parser
from ddpinn.metalic.cli import add_metalic_parser
from ddpinn.parallel.errors import EXIT_CONFIG
from ddpinn.run import cmd_run, setup

log = logging.getLogger("ddpinn")


def _print_quantities(cfg) -> None:
    """The quantities of interest of ``[output]`` (``ddpinn info``), when there are any."""
    from ddpinn.quantities_of_interest.spec import describe, parse_quantities

    time_axis = len(cfg.axis_names) - 1 if cfg.has_time else None
    lines = describe(parse_quantities(cfg.output), len(cfg.axis_names), time_axis)
    if lines:
        print(f"quantities of interest (solution.nc, errors.json, metrics every "
              f"{cfg.output.eval_every or 'no'} steps):")
        for line in lines:
            print(f"  {line}")


def cmd_info(args) -> int:
    from ddpinn.decomposition import assign_owners
    from ddpinn.interface.conditions import needed_quantities
    from ddpinn.interface.quantities import values_per_point
    from ddpinn.parallel import SerialComm
    from ddpinn.parallel.errors import DDPINNError
    from ddpinn.training.footprint import peak_rss_bytes, tensor_bytes
    from ddpinn.training.memory import estimate_rank_memory, format_estimate
    from ddpinn.training.points import batch_bytes, problem_rows
    from ddpinn.training.experts import DTYPES, make_experts

    try:
        cfg, problem = setup(args, SerialComm())
    except DDPINNError as exc:
        sys.stderr.write(f"ddpinn: error: {exc}\n")
        return EXIT_CONFIG
    d, pde = problem.decomposition, problem.pde
    ranks = args.ranks or 1
    replicas = cfg.parallel.replicas
    groups = ranks // replicas
    owner = assign_owners(d, groups, problem.work)
    print(f"case {cfg.case.name!r}: PDE {pde.name} (outputs {', '.join(pde.outputs)}), "
          f"axes {', '.join(d.box.names)}")
    print(f"domain lower {list(d.box.lower)} upper {list(d.box.upper)}; periodic "
          f"{[n for n, p in zip(d.box.names, d.periodic) if p] or 'none'}")
    n_time = 0 if problem.time_axis is None else \
        int((d.interface_axis == problem.time_axis).sum())
    kinds = {"space": len(d.interfaces) - n_time, "time": n_time}
    print(f"grid {list(d.grid)} -> {d.n_subdomains} subdomains, {len(d.interfaces)} interfaces "
          f"({kinds['space']} space, {kinds['time']} time)")
    for name in cfg.decomposition.cuts:
        a = d.box.names.index(name)
        print(f"cells along {name} at {[round(float(v), 6) for v in d.edges[a]]} "
              f"(decomposition.cuts)")
    if problem.shape is not None:
        from ddpinn.problem_shape import shape_summary

        print("\n".join(shape_summary(problem)))
    q = needed_quantities(problem.conditions.names)
    per_point = values_per_point(q, pde.n_out, _n_equations(problem), d.box.dim)
    print(f"conditions {problem.conditions}; exchanged per point: "
          f"{', '.join(q)} = {per_point} values")
    _print_quantities(cfg)
    n_if = cfg.points.interface
    itemsize = 4 if cfg.case.dtype == "float32" else 8
    # Per-group sums from the interface arrays: linear in the subdomains for any rank count.
    ends = owner[d.interface_sids]  # (I, 2) group of each side
    cross = ends[ends[:, 0] != ends[:, 1]]
    remote_sides = np.bincount(cross.reshape(-1), minlength=groups)
    pairs = np.unique(np.concatenate([cross, cross[:, ::-1]]), axis=0)
    n_nbrs = np.bincount(pairs[:, 0], minlength=groups) if len(pairs) else np.zeros(groups, int)
    by_group = np.argsort(owner, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=groups))])
    one_expert = make_experts(problem, [0], DTYPES[cfg.case.dtype])
    param_bytes = tensor_bytes(one_expert.parameters())
    rows = problem_rows(problem, replicas)
    memory = f"memory: parameters and points per rank, {rows} rows per expert"
    if replicas == 1:
        print(f"partition over {ranks} ranks ({memory}):")
        print(f"{'rank':>6} {'subdomains':>10}  {'sids':<24} {'nbr ranks':>9} "
              f"{'remote pts':>10} {'values/step':>11} {'bytes/step':>10} {'params MB':>9} "
              f"{'points MB':>9}")
    else:
        # Per replica: its share of every interface's points (the first replica's, the largest).
        n_if = len(range(0, n_if, replicas))
        print(f"partition over {groups} groups of {replicas} replicas ({ranks} ranks); group g "
              f"is ranks {replicas}g..{replicas}g+{replicas - 1}, each replica takes 1/{replicas} "
              f"of the points and exchanges with the same replica of the neighbour groups "
              f"({memory}):")
        print(f"{'group':>6} {'ranks':>9} {'subdomains':>10}  {'sids':<24} {'nbr groups':>10} "
              f"{'remote pts':>10} {'values/step':>11} {'bytes/step':>10} {'params MB':>9} "
              f"{'points MB':>9}  (per replica)")
    for r in range(groups):
        sids = by_group[starts[r]:starts[r + 1]].tolist()
        pts = n_if * int(remote_sides[r])
        label = _ranges(sids)
        points_mb = batch_bytes(len(sids), rows, d.box.dim, pde.n_out, itemsize) / 2 ** 20
        traffic = (f"{pts:>10} {pts * per_point:>11} {pts * per_point * itemsize:>10} "
                   f"{len(sids) * param_bytes / 2 ** 20:>9.2f} {points_mb:>9.2f}")
        if replicas == 1:
            print(f"{r:>6} {len(sids):>10}  {label:<24} {int(n_nbrs[r]):>9} {traffic}")
        else:
            members = f"{r * replicas}-{(r + 1) * replicas - 1}"
            print(f"{r:>6} {members:>9} {len(sids):>10}  {label:<24} {int(n_nbrs[r]):>10} "
                  f"{traffic}")
    _print_data_memory(problem, owner, groups)
    print(f"estimated peak memory per rank (max over {ranks} ranks): "
          f"{format_estimate(estimate_rank_memory(cfg, problem, ranks))}")
    print(f"peak RSS of this command: {peak_rss_bytes() / 2 ** 20:.0f} MB (ddpinn run logs "
          f"every rank's peak RSS, max / mean, at start and after training)")
    return 0


def _print_data_memory(problem, owner, groups: int) -> None:
    """Per [[data]] table: the MB of file values each rank holds (its experts' part)."""
    if not problem.data:
        return
    d = problem.decomposition
    print("data files: MB of values each rank reads and holds (only its subdomains' part; "
          "a reference: its part inside the domain, for scoring)")
    for data in problem.data.values():
        per_rank = []
        for r in range(groups):
            sids = np.flatnonzero(owner == r)
            if data.spec.use == "observations":  # one read per expert, its cell
                nbytes = sum(data.nbytes_for(d.lower[s], d.upper[s]) for s in sids)
            elif data.spec.use == "boundary":  # one region: the rank's cells together
                nbytes = data.nbytes_for(d.lower[sids].min(0), d.upper[sids].max(0))
            else:  # a reference: its part inside the domain, on every rank
                nbytes = data.nbytes_for(*data.source.overlap(problem.box.lower,
                                                              problem.box.upper))
            per_rank.append(nbytes / 2 ** 20)
        shown = " ".join(f"{v:.2f}" for v in per_rank[:16]) + (" ..." if groups > 16 else "")
        how = (f"{data.source.kind}, {data.spec.interpolation}" if data.spec.use == "boundary"
               else data.source.kind)  # interpolated only as boundary data
        print(f"  {data.name} ({data.spec.use}, {how}, {data.source.path.name}): "
              f"max {max(per_rank):.2f} MB per rank; by rank: {shown}")


def _n_equations(problem) -> int:
    import torch

    from ddpinn.nn import Fields

    pde = problem.pde
    x = torch.rand(1, 2, problem.box.dim, dtype=torch.float64, requires_grad=True)
    u = torch.zeros(1, 2, pde.n_out, dtype=torch.float64) + x.sum(-1, keepdim=True) ** 3
    return pde.residual(Fields(x, u, pde.axes, pde.outputs), pde.params).shape[-1]


def _ranges(sids) -> str:
    """[0,1,2,5] -> '0-2,5'."""
    out, start = [], None
    for i, s in enumerate(sids):
        if start is None:
            start = s
        if i + 1 == len(sids) or sids[i + 1] != s + 1:
            out.append(f"{start}-{s}" if s != start else f"{s}")
            start = None
    text = ",".join(out)
    return text if len(text) <= 24 else text[:21] + "..."


def cmd_plot(args) -> int:
    from ddpinn.io.plots import plot_run

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        sys.stderr.write(f"ddpinn: error: {run_dir} is not a run directory\n")
        return EXIT_CONFIG
    for p in plot_run(run_dir):
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddpinn", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"ddpinn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a case (launch on every rank)")
    run.add_argument("case", help="case file (TOML)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a case field, e.g. --set stages.0.steps=100")
    run.add_argument("--resume", metavar="auto|PATH",
                     help="resume from a checkpoint (auto: the newest in the run directory)")
    run.add_argument("--overwrite", action="store_true",
                     help="start a new run in a directory that holds one: the old run's "
                          "files are moved to RUN/previous/, not deleted")
    run.add_argument("--quiet", action="store_true", help="warnings only")
    run.set_defaults(func=cmd_run)
    add_eval_parser(sub)
    info = sub.add_parser("info", help="print the decomposition, rank map and exchange volume")
    info.add_argument("case")
    info.add_argument("--ranks", type=int, default=1)
    info.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    info.set_defaults(func=cmd_info)
    plot = sub.add_parser("plot", help="redraw the plots of a run directory")
    plot.add_argument("run")
    plot.set_defaults(func=cmd_plot)
    add_metalic_parser(sub)
    _add_reference_parser(sub)
    return p


def cmd_reference(args) -> int:
    """``ddpinn reference tgv``: compute a spectral Taylor-Green reference and write it."""
    from ddpinn.references import taylor_green_reference

    if args.re <= 0 or args.t_end <= 0 or args.dt_out <= 0:
        sys.stderr.write(f"ddpinn: error: --re, --t-end and --dt-out must be > 0, got "
                         f"{args.re}, {args.t_end}, {args.dt_out}\n")
        return EXIT_CONFIG
    times = np.linspace(0.0, args.t_end, int(round(args.t_end / args.dt_out)) + 1)
    t0 = time.perf_counter()

    def progress(t, steps):
        sys.stderr.write(f"t = {t:.4g} / {args.t_end:g} ({steps} steps, "
                         f"{time.perf_counter() - t0:.1f} s)\n")

    try:
        ref = taylor_green_reference(args.n, 1.0 / args.re, times, cfl=args.cfl,
                                     store_velocity=not args.no_velocity, progress=progress,
                                     device=args.device)
    except ValueError as exc:
        sys.stderr.write(f"ddpinn: error: {exc}\n")
        return EXIT_CONFIG
    ref.write_netcdf(args.out)
    sys.stderr.write(f"wrote {args.out}: {args.n}^3, Re {args.re:g}, {len(times)} times, "
                     f"E(t_end) = {ref.energy[-1]:.6g}\n")
    return 0


def cmd_reference_subvolume(args) -> int:
    """``ddpinn reference tgv-subvolume``: a cube of the spectral Taylor-Green vortex at the
    times of a window, as NetCDF grid data (and a coarser reference file with |omega| and the
    local dissipation rate)."""
    from ddpinn.references.subvolume import SubvolumeGrid, taylor_green_subvolume

    checks = [(args.re > 0, "--re must be > 0"), (args.side > 0, "--side must be > 0"),
              (0 <= args.window[0] < args.window[1], "--window needs 0 <= T0 < T1"),
              (args.dt > 0 and args.dt_diag > 0, "--dt and --dt-diag must be > 0"),
              (args.points >= 2 and args.reference_points >= 2,
               "--points and --reference-points must be >= 2")]
    bad = [msg for ok, msg in checks if not ok]
    if bad:
        sys.stderr.write(f"ddpinn: error: {bad[0]}\n")
        return EXIT_CONFIG
    grids = [SubvolumeGrid(args.points)]
    if args.reference_out:
        grids.append(SubvolumeGrid(args.reference_points, derived=True))
    t0 = time.perf_counter()

    def progress(t, steps):
        sys.stderr.write(f"t = {t:.4g} ({steps} steps, {time.perf_counter() - t0:.1f} s)\n")

    try:
        sub = taylor_green_subvolume(args.n, 1.0 / args.re, args.lower, args.side,
                                     args.window, args.dt, grids, dt_diag=args.dt_diag,
                                     t_end=args.t_end, cfl=args.cfl, progress=progress,
                                     device=args.device)
    except ValueError as exc:
        sys.stderr.write(f"ddpinn: error: {exc}\n")
        return EXIT_CONFIG
    sub.write_netcdf(args.out, grids[0])
    if args.reference_out:
        sub.write_netcdf(args.reference_out, grids[1])
    peak = int(np.argmax(sub.diagnostics["dissipation"]))
    sys.stderr.write(f"wrote {args.out}{' and ' + args.reference_out if args.reference_out else ''}"
                     f": {args.n}^3, Re {args.re:g}, {len(sub.times)} times in "
                     f"[{args.window[0]:g}, {args.window[1]:g}]; peak -dE/dt "
                     f"{sub.diagnostics['dissipation'][peak]:.5g} at t = "
                     f"{sub.diag_times[peak]:.3g}\n")
    return 0


def _add_reference_parser(sub) -> None:
    ref = sub.add_parser("reference", help="compute a reference solution (spectral solver)")
    rsub = ref.add_subparsers(dest="reference_command", required=True)
    tgv = rsub.add_parser("tgv", help="3D Taylor-Green vortex in [-pi, pi]^3 (pseudo-spectral)")
    tgv.add_argument("--n", type=int, default=64, help="grid points per axis (even)")
    tgv.add_argument("--re", type=float, default=100.0, help="Reynolds number, nu = 1 / Re")
    tgv.add_argument("--t-end", type=float, default=2.0)
    tgv.add_argument("--dt-out", type=float, default=0.1, help="interval of the output times")
    tgv.add_argument("--cfl", type=float, default=0.5)
    tgv.add_argument("--no-velocity", action="store_true",
                     help="store only E, -dE/dt and enstrophy, not the fields")
    tgv.add_argument("--out", required=True, help="NetCDF file to write")
    _add_device_argument(tgv)
    tgv.set_defaults(func=cmd_reference)
    sv = rsub.add_parser("tgv-subvolume", help="a cube of the 3D Taylor-Green vortex over a "
                         "time window, as NetCDF grid data for [[data]] tables")
    sv.add_argument("--n", type=int, default=128, help="solver grid points per axis (even)")
    sv.add_argument("--re", type=float, default=1600.0, help="Reynolds number, nu = 1 / Re")
    sv.add_argument("--lower", type=float, nargs=3, default=[math.pi / 8] * 3,
                    metavar=("X0", "Y0", "Z0"), help="the cube's lower corner")
    sv.add_argument("--side", type=float, default=math.pi / 2, help="the cube's edge length")
    sv.add_argument("--window", type=float, nargs=2, default=[8.75, 9.25],
                    metavar=("T0", "T1"), help="the recorded time window")
    sv.add_argument("--dt", type=float, default=0.025, help="interval of the recorded times")
    sv.add_argument("--points", type=int, default=65, help="grid points per side of --out")
    sv.add_argument("--t-end", type=float, default=None,
                    help="run the whole-box diagnostics on to this time (default T1)")
    sv.add_argument("--dt-diag", type=float, default=0.1,
                    help="interval of the whole-box diagnostics E, -dE/dt, enstrophy")
    sv.add_argument("--cfl", type=float, default=0.5)
    sv.add_argument("--out", required=True, help="NetCDF grid file: u, v, w, p on (t, x, y, z)")
    sv.add_argument("--reference-out", default=None,
                    help="a second, coarser file that also holds |omega| and 2 nu S_ij S_ij")
    sv.add_argument("--reference-points", type=int, default=17,
                    help="grid points per side of --reference-out")
    _add_device_argument(sv)
    sv.set_defaults(func=cmd_reference_subvolume)


def _add_device_argument(parser) -> None:
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="where the spectral solver runs (auto: a GPU when one is "
                             "visible); a 256^3 run needs a GPU to finish in minutes")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

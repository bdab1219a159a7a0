"""PNG plots of a finished (or running) run directory: solution, errors, decomposition, metrics.

:func:`plot_run` looks for ``solution.nc``, ``decomposition.json`` and ``metrics.jsonl`` in a
run directory and writes what it can into ``<run_dir>/plots/``. Figures are built with
:class:`matplotlib.figure.Figure` on the Agg canvas, never through ``pyplot``: no global figure
registry (so nothing to close or leak), no display needed, safe on headless cluster nodes.
Every PNG is written atomically.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .figures import new_figure, save_figure
from .flow_diagnostics import DIAGNOSTICS_FILE, plot_diagnostics
from .netcdf import MASK_ATTR, is_time_axis, read_solution

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SOLUTION_FILE = "solution.nc"
DECOMPOSITION_FILE = "decomposition.json"
METRICS_FILE = "metrics.jsonl"
PLOTS_DIR = "plots"

LOSS_TERMS = ("loss", "residual", "boundary", "data")  # plus every "if_*" key
MAX_LABELLED_SUBDOMAINS = 64
MAX_LEGEND_RANKS = 20  # beyond this a colorbar reads better than a legend


def plot_run(run_dir: PathLike) -> List[Path]:
    """Write PNG plots for everything found in a run directory.

    Parameters
    ----------
    run_dir : str or os.PathLike
        Directory that may hold ``solution.nc``, ``decomposition.json``, ``metrics.jsonl``
        and ``diagnostics.nc``.
        Missing files are skipped silently.

    Returns
    -------
    list of pathlib.Path
        The PNG files written, all in ``run_dir/plots/`` (created only when needed); empty
        when the directory holds nothing to plot.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a directory.
    ValueError
        ``decomposition.json`` is malformed.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {str(run)!r} does not exist")
    out_dir = run / PLOTS_DIR
    written: List[Path] = []
    for name, plotter in ((SOLUTION_FILE, plot_solution),
                          (DECOMPOSITION_FILE, plot_decomposition),
                          (METRICS_FILE, plot_metrics),
                          (DIAGNOSTICS_FILE, plot_diagnostics)):
        source = run / name
        if source.is_file():
            written += plotter(source, out_dir)
    return written


# ----------------------------------------------------------------------------------- helpers

def _safe_name(name: str) -> str:
    """A variable name usable as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def _label(name: str, unit: Optional[str]) -> str:
    return name if unit in (None, "", "1") else f"{name} [{unit}]"


# ---------------------------------------------------------------------------------- solution

def plot_solution(path: PathLike, out_dir: PathLike) -> List[Path]:
    """Plot every field of a solution file and, where present, its pointwise error.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`ddpinn.io.netcdf.write_solution`.
    out_dir : str or os.PathLike
        Where ``solution_<field>.png`` and ``error_<field>.png`` go.

    Returns
    -------
    list of pathlib.Path
    """
    sol = read_solution(path)
    out_dir = Path(out_dir)
    written = []
    for name, data in sol["fields"].items():
        l2 = _l2_text(sol["attrs"], name)
        fig = _field_figure(sol, data, name, f"{name}{l2}", error=False)
        written.append(save_figure(fig, out_dir / f"solution_{_safe_name(name)}.png"))
        if name in sol["errors"]:
            fig = _field_figure(sol, sol["errors"][name], f"{name} error",
                                f"pointwise error of {name}{l2}", error=True)
            written.append(save_figure(fig, out_dir / f"error_{_safe_name(name)}.png"))
    return written


def _l2_text(attrs: dict, name: str) -> str:
    value = attrs.get(f"l2_{name}")
    try:
        return f"  (relative L2 error {float(value):.3e})" if value is not None else ""
    except (TypeError, ValueError):
        return f"  (relative L2 error {value})"


def reduce_to_2d(axes: Dict[str, np.ndarray], data: np.ndarray
                 ) -> Tuple[List[str], List[np.ndarray], np.ndarray, List[str]]:
    """Slice a gridded array down to one or two axes for plotting.

    Singleton axes are dropped first; then, while more than two axes remain, the time axis is
    fixed at its last value, and after that the last space axis (``z``) at its middle index.

    Parameters
    ----------
    axes : dict name -> 1D array
        Axes in array order, shapes ``(n_0,)``, ..., ``(n_{D-1},)``.
    data : array, shape ``(n_0, ..., n_{D-1})``

    Returns
    -------
    names : list of str, length 1 or 2
    coords : list of 1D arrays
    data : array, shape ``(n_a,)`` or ``(n_a, n_b)``
    notes : list of str
        The fixed coordinates, e.g. ``["t = 1", "z = 0.5"]``, for the title.
    """
    names, coords = list(axes), [np.asarray(a) for a in axes.values()]
    notes = []

    def fix(i: int, k: int) -> None:
        nonlocal data
        notes.append(f"{names[i]} = {coords[i][k]:.4g}")
        data = np.take(data, k, axis=i)
        del names[i], coords[i]

    for i in reversed(range(len(names))):
        if len(coords[i]) == 1 and len(names) > 1:
            fix(i, 0)
    while len(names) > 2:
        times = [i for i, n in enumerate(names) if is_time_axis(n)]
        if times:
            fix(times[0], len(coords[times[0]]) - 1)  # the final state is what users look at
        else:
            i = len(names) - 1
            fix(i, len(coords[i]) // 2)
    return names, coords, data, notes


def _field_figure(sol: dict, data: np.ndarray, quantity: str, title: str,
                  error: bool) -> Figure:
    names, coords, data, notes = reduce_to_2d(sol["axes"], data)
    if notes:
        title = f"{title}\n{', '.join(notes)}"
    fig = new_figure()
    ax = fig.add_subplot()
    data = np.ma.masked_invalid(data)
    if len(names) == 1:
        ax.plot(coords[0], data, "-" if len(coords[0]) > 1 else "o")
        ax.set_ylabel(quantity)
        ax.grid(True, alpha=0.3)
    else:
        _pcolormesh(fig, ax, names, coords, data, quantity, error)
        if MASK_ATTR in sol["attrs"]:
            _outline(ax, coords, data)
        ax.set_ylabel(_label(names[1], sol["units"].get(names[1])))
    ax.set_xlabel(_label(names[0], sol["units"].get(names[0])))
    ax.set_title(title)
    return fig


def _pcolormesh(fig: Figure, ax, names: List[str], coords: List[np.ndarray],
                data: np.ma.MaskedArray, quantity: str, error: bool) -> None:
    cmap, norm = "viridis", None
    finite = data.compressed()
    if error and finite.size and finite.min() < 0 < finite.max():
        # Signed errors: a diverging map centred on zero shows over- and undershoot.
        # Symmetric limits so equal colours mean equal magnitudes on both sides.
        extent = float(np.abs(finite).max())
        cmap, norm = "RdBu_r", Normalize(-extent, extent)
    elif error:
        cmap = "magma"
    # data is (n_first, n_second); pcolormesh wants rows along the vertical axis.
    mesh = ax.pcolormesh(coords[0], coords[1], data.T, shading="nearest", cmap=cmap, norm=norm)
    fig.colorbar(mesh, ax=ax, label=quantity)
    if not any(is_time_axis(n) for n in names):
        width = np.ptp(coords[0])
        height = np.ptp(coords[1])
        # Equal aspect keeps vortices round, unless the box is so elongated it becomes a line.
        if width > 0 and height > 0 and 0.2 <= height / width <= 5:
            ax.set_aspect("equal")


def _outline(ax, coords: List[np.ndarray], data: np.ma.MaskedArray) -> None:
    """The boundary of a non-box domain: the edge of the points inside (masked values lie
    outside), drawn over the field."""
    inside = ~np.ma.getmaskarray(data)
    if inside.all() or not inside.any() or min(inside.shape) < 2:
        return
    ax.contour(coords[0], coords[1], inside.T.astype(float), levels=[0.5], colors="k",
               linewidths=0.8)


# ----------------------------------------------------------------------------- decomposition

def load_decomposition(path: PathLike) -> dict:
    """Read and check ``decomposition.json``.

    Returns
    -------
    dict
        ``"axis_names"`` (list of D str), ``"lower"`` and ``"upper"`` (arrays ``(S, D)``),
        ``"owner"`` (int array ``(S,)``), ``"grid"`` (list).

    Raises
    ------
    ValueError
        Missing keys or inconsistent shapes, with the file name in the message.
    """
    try:
        raw = json.loads(Path(path).read_text())
        lower = np.asarray(raw["lower"], dtype=np.float64)
        upper = np.asarray(raw["upper"], dtype=np.float64)
        owner = np.asarray(raw["owner"], dtype=np.int64)
        names = [str(n) for n in raw.get("axis_names", [])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid decomposition file ({exc!r})") from exc
    if lower.ndim != 2 or lower.shape != upper.shape or owner.shape != (lower.shape[0],):
        raise ValueError(f"{path}: lower {lower.shape}, upper {upper.shape} and owner "
                         f"{owner.shape} must be (S, D), (S, D) and (S,)")
    if not names:
        names = [f"x{i}" for i in range(lower.shape[1])]
    if len(names) != lower.shape[1]:
        raise ValueError(f"{path}: {len(names)} axis_names for {lower.shape[1]}-D boxes")
    return {"axis_names": names, "lower": lower, "upper": upper, "owner": owner,
            "grid": list(raw.get("grid", [])),
            "volume_fraction": np.asarray(raw.get("volume_fraction", np.ones(len(owner))),
                                          dtype=np.float64),
            "boundary_points": np.asarray(raw.get("boundary_points", []), dtype=np.float64)}


def plot_decomposition(path: PathLike, out_dir: PathLike) -> List[Path]:
    """Plot subdomain boxes coloured by owner rank into ``out_dir/decomposition.png``.

    1D: intervals on a line. 2D: rectangles. More axes: boxes projected onto the first two
    axes, each distinct projection drawn once (hatched where its subdomains have different
    owners), labelled with all its sids.

    Returns
    -------
    list of pathlib.Path
        Empty when the file lists no subdomains.
    """
    dec = load_decomposition(path)
    n_sub = len(dec["owner"])
    if n_sub == 0:
        return []
    n_ranks = int(dec["owner"].max()) + 1
    colour = _rank_colours(n_ranks)
    fig = new_figure(7.0, 5.5)
    ax = fig.add_subplot()
    mixed = False
    if dec["lower"].shape[1] == 1:
        _draw_intervals(ax, dec, colour)
    else:
        mixed = _draw_boxes(ax, dec, colour)
        _draw_shape(ax, dec)
    _rank_key(fig, ax, colour, n_ranks, mixed)
    ax.set_title(_decomposition_title(dec, n_ranks))
    return [save_figure(fig, Path(out_dir) / "decomposition.png")]


def _rank_colours(n_ranks: int) -> ListedColormap:
    """One colour per rank: qualitative while a legend is readable, sequential beyond."""
    if n_ranks <= 10:
        return ListedColormap(colormaps["tab10"].colors[:n_ranks])
    if n_ranks <= MAX_LEGEND_RANKS:
        return ListedColormap(colormaps["tab20"].colors[:n_ranks])
    return ListedColormap(colormaps["viridis"](np.linspace(0.0, 1.0, n_ranks)))


def _draw_intervals(ax, dec: dict, colour: ListedColormap) -> None:
    label = len(dec["owner"]) <= MAX_LABELLED_SUBDOMAINS
    for sid, (lo, hi, rank) in enumerate(zip(dec["lower"][:, 0], dec["upper"][:, 0],
                                             dec["owner"])):
        ax.add_patch(Rectangle((lo, 0.0), hi - lo, 1.0, facecolor=colour(int(rank)),
                               edgecolor="black", alpha=0.7))
        if label:
            ax.text(0.5 * (lo + hi), 0.5, str(sid), ha="center", va="center", fontsize=8)
    ax.set_xlim(dec["lower"][:, 0].min(), dec["upper"][:, 0].max())
    ax.set_ylim(-0.25, 1.25)
    ax.set_yticks([])
    ax.set_xlabel(dec["axis_names"][0])


def _draw_boxes(ax, dec: dict, colour: ListedColormap) -> bool:
    """Draw the (projected) boxes; True if some projection hides several owners."""
    mixed = False
    columns = _projected_boxes(dec["lower"], dec["upper"])
    label = len(dec["owner"]) <= MAX_LABELLED_SUBDOMAINS
    for (x0, y0, x1, y1), sids in columns.items():
        ranks = {int(dec["owner"][s]) for s in sids}
        mixed |= len(ranks) > 1
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, alpha=0.7, edgecolor="black",
                               facecolor=colour(int(dec["owner"][sids[0]])),
                               hatch="//" if len(ranks) > 1 else None))
        if label:
            ax.text(0.5 * (x0 + x1), 0.5 * (y0 + y1), ",".join(map(str, sids)),
                    ha="center", va="center", fontsize=8 if len(sids) < 4 else 6)
    ax.set_xlim(dec["lower"][:, 0].min(), dec["upper"][:, 0].max())
    ax.set_ylim(dec["lower"][:, 1].min(), dec["upper"][:, 1].max())
    ax.set_xlabel(dec["axis_names"][0])
    ax.set_ylabel(dec["axis_names"][1])
    return mixed


def _draw_shape(ax, dec: dict) -> None:
    """A shaped domain: its boundary (points, first two axes) over the cells, and the cut
    cells (inside fraction < 1) outlined in red with their fraction."""
    pts = dec["boundary_points"]
    if pts.ndim == 2 and pts.shape[1] >= 2 and len(pts):
        ax.plot(pts[:, 0], pts[:, 1], ".", color="black", markersize=1.0)
    frac = dec["volume_fraction"]
    if len(frac) > MAX_LABELLED_SUBDOMAINS:
        return
    for sid in np.flatnonzero(frac < 1.0):
        (x0, y0), (x1, y1) = dec["lower"][sid, :2], dec["upper"][sid, :2]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red",
                               linewidth=1.5))
        ax.text(x0 + 0.02 * (x1 - x0), y0 + 0.04 * (y1 - y0), f"{frac[sid]:.2f}",
                color="red", fontsize=6)


def _projected_boxes(lower: np.ndarray, upper: np.ndarray) -> Dict[tuple, List[int]]:
    """Distinct boxes on the first two axes -> the sids that project onto each, in sid order."""
    columns: Dict[tuple, List[int]] = {}
    for sid in range(len(lower)):
        # Rounding merges boxes whose bounds differ only by floating-point noise.
        key = tuple(round(float(v), 12) for v in (lower[sid, 0], lower[sid, 1],
                                                 upper[sid, 0], upper[sid, 1]))
        columns.setdefault(key, []).append(sid)
    return columns


def _rank_key(fig: Figure, ax, colour: ListedColormap, n_ranks: int, mixed: bool) -> None:
    """Legend of ranks (colorbar when there are many); explain hatching when used."""
    mixed_handle = Patch(facecolor="white", edgecolor="black", hatch="//",
                         label="several owners\n(colour: lowest sid)")
    if n_ranks <= MAX_LEGEND_RANKS:
        handles = [Patch(facecolor=colour(r), edgecolor="black", alpha=0.7, label=f"rank {r}")
                   for r in range(n_ranks)]
        handles += [mixed_handle] if mixed else []
        # Outside the axes so no box is hidden; constrained layout makes room for it.
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, title="owner", fontsize=8)
    else:
        mappable = ScalarMappable(norm=Normalize(-0.5, n_ranks - 0.5), cmap=colour)
        fig.colorbar(mappable, ax=ax, label="owner rank")
        if mixed:
            ax.legend(handles=[mixed_handle], loc="upper left", bbox_to_anchor=(0.0, -0.12),
                      fontsize=8)


def _decomposition_title(dec: dict, n_ranks: int) -> str:
    title = f"{len(dec['owner'])} subdomains on {n_ranks} rank{'s' if n_ranks != 1 else ''}"
    if dec["grid"]:
        title += f", grid {' x '.join(map(str, dec['grid']))}"
    if len(dec["axis_names"]) > 2:
        title += f"\nprojected onto ({dec['axis_names'][0]}, {dec['axis_names'][1]})"
    return title


# ----------------------------------------------------------------------------------- metrics

def read_metrics(path: PathLike) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Read ``metrics.jsonl`` into one (steps, values) series per numeric key.

    Lines that are not JSON objects with an integer ``"step"`` (for instance a line cut short
    when a job was killed) are skipped with a warning. A step logged twice (a run restarted
    from a checkpoint appends again) keeps its last value.

    Returns
    -------
    dict key -> (steps, values)
        ``steps``: int array ``(n,)``, increasing; ``values``: float array ``(n,)``; only
        finite values are kept.
    """
    from ddpinn.io.metrics import read_metrics as read_rows

    series: Dict[str, Dict[int, float]] = {}
    for record in read_rows(path):
        step = record.pop("step")
        for key, value in record.items():
            if _is_number(value) and math.isfinite(value):
                series.setdefault(key, {})[step] = float(value)
    return {key: (np.array(sorted(s), dtype=np.int64),
                  np.array([s[k] for k in sorted(s)], dtype=np.float64))
            for key, s in series.items()}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_metrics(path: PathLike, out_dir: PathLike) -> List[Path]:
    """Plot loss terms (``loss.png``) and, if logged, relative L2 errors (``l2_error.png``).

    Both use a log y axis, on which NaN and non-positive values are left out.

    Returns
    -------
    list of pathlib.Path
        The plots that had at least one positive value to show.
    """
    series = read_metrics(path)
    out_dir = Path(out_dir)
    loss_keys = [k for k in LOSS_TERMS if k in series]
    loss_keys += sorted(k for k in series if k.startswith("if_"))
    l2_keys = sorted(k for k in series if k.startswith("l2_"))
    written = []
    for keys, ylabel, name in ((loss_keys, "loss term", "loss.png"),
                               (l2_keys, "relative L2 error", "l2_error.png")):
        fig = _log_curves(series, keys, ylabel)
        if fig is not None:
            written.append(save_figure(fig, out_dir / name))
    return written


def _log_curves(series: dict, keys: Sequence[str], ylabel: str) -> Optional[Figure]:
    """Curves of ``keys`` vs step on a log y axis, or None if nothing is positive."""
    fig = new_figure()
    ax = fig.add_subplot()
    drawn = 0
    for key in keys:
        steps, values = series[key]
        keep = values > 0  # already finite; log axes cannot show zero or negatives
        if not keep.any():
            continue
        style = dict(color="black", linewidth=2.0) if key == "loss" else dict(linewidth=1.0)
        sparse = keep.sum() < 50  # l2 errors are logged rarely: show the points
        ax.plot(steps[keep], values[keep], marker="o" if sparse else None, markersize=3,
                label=key[3:] if key.startswith("l2_") else key, **style)
        drawn += 1
    if not drawn:
        fig.clear()
        return None
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


__all__ = ["plot_run", "plot_solution", "plot_decomposition", "plot_metrics",
           "read_metrics", "load_decomposition", "reduce_to_2d"]

"""Held-out comparison: the campaign's choice against fixed interface-condition sets.

On K contexts that the campaign did not draw, every arm of a one-stage campaign is trained once
with the campaign's round settings (its ``[run] set``). From that table of errors (K x arms):

``metalic``     the arm with the highest posterior mean reward at each context (what
                ``ddpinn metalic suggest`` returns; the held-out runs never enter the GP)
``default``     one fixed set for every context, by default XPINN's (average solution and
                residual continuity)
``random``      one uniformly random arm per context (seeded); also its expectation, the mean
                error over all arms
``best fixed``  the one arm with the lowest mean error over the K contexts, found with
                hindsight by trying every arm on them
``oracle``      the best arm at each context (a bound no single choice can beat)

Results live in ``<campaign dir>/heldout/results.json`` (written after every run, so an
interrupted comparison resumes where it stopped); the runs in ``heldout/ctx_KK/arm_AA``.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ddpinn.io.atomic import atomic_write_text
from ddpinn.interface.conditions import DEFAULT_CONDITIONS
from ddpinn.io.config import ConfigError

XPINN_DEFAULT = DEFAULT_CONDITIONS  # the default arm: XPINN's pair
RESULTS = "results.json"


def heldout_contexts(contexts, k: int, seed: int = 0) -> list:
    """K held-out contexts, spread evenly over the standardised range.

    One parameter: the midpoints of K equal bins (never the range ends, which random
    campaign draws rarely reach). Several: a scrambled Halton set (scipy).

    Returns a list of K dicts {name: value}.
    """
    d = len(contexts)
    if d == 1:
        z = ((np.arange(k) + 0.5) / k)[:, None]
    else:
        from scipy.stats import qmc

        z = qmc.Halton(d=d, scramble=True, seed=seed).random(k)
    return [contexts.values(row) for row in z]


def default_arm(arms, conditions=XPINN_DEFAULT) -> int:
    """Index of the arm whose set is exactly ``conditions``; ConfigError if it is not an arm."""
    names = [c for v in conditions.values() for c in v] if isinstance(conditions, dict) \
        else list(conditions)
    unknown = [c for c in names if c not in arms.candidates]
    if unknown:
        raise ConfigError(f"the default set names {', '.join(unknown)}, which the campaign's "
                          f"arms.candidates do not have: {', '.join(arms.candidates)}")
    try:
        return arms.index(conditions if isinstance(conditions, dict) else list(conditions))
    except ValueError as exc:
        raise ConfigError(f"the default set {', '.join(conditions)} is not an arm of the "
                          f"campaign ({exc}); add it to arms.list or pass --default") from None


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None


def run_table(campaign, k: int = 10, jobs: int = 1, launcher=None, ranks=None,
              echo=print) -> dict:
    """Train every arm at K held-out contexts (missing entries only) and return the table.

    Returns {"contexts": [dict] (K), "masks": [str] (A), "errors": [[float|None]] (K, A),
    "seconds": [[float|None]] (K, A)}; a run that diverged has the error 10**-reward.floor
    (the value its reward would be clipped to), one that failed otherwise None.
    """
    from ddpinn.metalic.runner import execute

    if campaign.settings.stages != 1:
        raise ConfigError("the held-out comparison trains every arm at every context, which "
                          "is defined for one-stage campaigns (campaign.stages = 1)")
    if campaign.reward.source == "synthetic":
        raise ConfigError("a synthetic campaign trains nothing; the held-out comparison needs "
                          "a campaign with a case")
    out_dir = campaign.dir / "heldout"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS
    contexts = heldout_contexts(campaign.contexts, k, campaign.settings.seed)
    masks = list(campaign.arms.masks)
    table = _load(path)
    if not table or table.get("contexts") != contexts or table.get("masks") != masks:
        table = {"contexts": contexts, "masks": masks,
                 "errors": [[None] * len(masks) for _ in contexts],
                 "seconds": [[None] * len(masks) for _ in contexts]}
    lock = threading.Lock()
    todo = [(i, a) for i in range(k) for a in range(len(masks)) if table["errors"][i][a] is None]
    diverged = 10.0 ** (-campaign.reward.floor)

    def one(item):
        i, a = item
        rnd = {"id": i * 1000 + a, "issued": "heldout", "masks": [masks[a]], "arms": [a],
               "context": contexts[i], "z": campaign.contexts.standardise(contexts[i]).tolist(),
               "run_dir": str(out_dir / f"ctx_{i:02d}" / f"arm_{a:02d}"), "attempts": 1,
               "claim": None}
        t0 = time.monotonic()
        result = execute(campaign, rnd, launcher, ranks)
        seconds = time.monotonic() - t0
        raw = result.get("raw") or {}
        err = diverged if raw.get("diverged") else raw.get("value")
        with lock:
            table["errors"][i][a] = err
            table["seconds"][i][a] = seconds
            atomic_write_text(path, json.dumps(table, indent=1))
            ctx = ", ".join(f"{n}={v:.4g}" for n, v in contexts[i].items())
            what = f"error {err:.3e}" if err is not None else result.get("error", "failed")
            echo(f"ddpinn metalic heldout: [{ctx}] {campaign.arms.label(a)}: {what} "
                 f"({seconds:.0f} s)")

    echo(f"ddpinn metalic heldout: {len(todo)} of {k * len(masks)} runs to train "
         f"({k} contexts x {len(masks)} arms, {jobs} at a time)")
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(one, todo))
    atomic_write_text(path, json.dumps(table, indent=1))
    return table


def compare(table: dict, state: dict, default=XPINN_DEFAULT, seed: int = 0) -> dict:
    """Mean and worst error of each way of choosing an arm, over the held-out contexts.

    Parameters
    ----------
    table : the result of :func:`run_table` (complete: no None errors)
    state : the campaign state (its finished rounds condition the GP)
    default : the fixed default set

    Returns {"methods": {name: {"arms": [int] (K), "errors": [float] (K), "mean", "worst",
    "geomean"}}, "contexts", "labels"}; "random (expected)" has no arms.
    """
    from ddpinn.metalic.suggest import suggest

    errors = np.array([[np.nan if e is None else float(e) for e in row]
                       for row in table["errors"]])
    missing = int(np.isnan(errors).sum())
    if missing:
        raise ConfigError(f"{missing} held-out run(s) have no error yet (failed or not run); "
                          f"run 'ddpinn metalic heldout' again")
    k, n_arms = errors.shape
    from ddpinn.metalic.arms import ArmSpace

    arms = ArmSpace.from_dict(state["spec"]["arms"])
    if list(arms.masks) != list(table["masks"]):
        raise ConfigError("the held-out table was made for other arms than the campaign's")
    picks = {
        "metalic": [suggest(state, ctx, top=1)["stages"][0]["arm"] for ctx in table["contexts"]],
        "default": [default_arm(arms, default)] * k,
        "random": list(np.random.default_rng(seed).integers(0, n_arms, k)),
        "best fixed": [int(np.argmin(np.log10(errors).mean(0)))] * k,
        "oracle": list(np.argmin(errors, 1)),
    }
    methods = {}
    for name, chosen in picks.items():
        e = errors[np.arange(k), chosen]
        methods[name] = {"arms": [int(a) for a in chosen], "errors": e.tolist(),
                         "mean": float(e.mean()), "worst": float(e.max()),
                         "geomean": float(np.exp(np.log(e).mean()))}
    methods["random (expected)"] = {"arms": None, "errors": errors.mean(1).tolist(),
                                    "mean": float(errors.mean()),
                                    "worst": float(errors.mean(1).max()),
                                    "geomean": float(np.exp(np.log(errors).mean()))}
    return {"methods": methods, "contexts": table["contexts"],
            "labels": [arms.label(a) for a in range(n_arms)], "masks": list(arms.masks),
            "errors": errors.tolist()}


def markdown(cmp: dict, describe) -> str:
    """The comparison as a markdown table (one row per method); ``describe(arm)`` -> text."""
    k = len(cmp["contexts"])
    lines = [f"Held-out comparison on {k} contexts (every arm trained once at each; error = the "
             f"reward's error, lower is better):", "",
             "| choice | arm(s) | mean error | geometric mean | worst error |", "|---|---|---|---|---|"]
    for name, m in cmp["methods"].items():
        if m["arms"] is None:
            which = "expectation over all arms"
        elif len(set(m["arms"])) == 1:
            a = m["arms"][0]
            which = f"`{cmp['masks'][a]}` {describe(a)}"
        else:
            which = f"{len(set(m['arms']))} different arms"
        lines.append(f"| {name} | {which} | {m['mean']:.3e} | {m['geomean']:.3e} | "
                     f"{m['worst']:.3e} |")
    lines.append("")
    return "\n".join(lines)


def plot(cmp: dict, path) -> Path:
    """Error of each choice at each held-out context (log scale), against the first parameter."""
    from ddpinn.io.figures import new_figure, save_figure

    name = next(iter(cmp["contexts"][0]))
    x = np.array([c[name] for c in cmp["contexts"]])
    order = np.argsort(x)
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    errors = np.array(cmp["errors"])
    for a in range(errors.shape[1]):
        ax.plot(x[order], errors[order, a], color="0.8", lw=0.8, zorder=1,
                label="every arm" if a == 0 else None)
    styles = {"metalic": ("C0", "o", 2.0), "default": ("C1", "s", 1.4),
              "random": ("C2", "^", 1.0), "best fixed": ("C3", "D", 1.4),
              "oracle": ("k", "", 0.8)}
    for mname, (color, marker, lw) in styles.items():
        e = np.array(cmp["methods"][mname]["errors"])
        ax.plot(x[order], e[order], color=color, marker=marker, lw=lw, ms=4, label=mname,
                ls="--" if mname == "oracle" else "-", zorder=3)
    ax.set_xlabel(name)
    ax.set_ylabel("relative L2 error")
    ax.set_yscale("log")
    if x.min() > 0 and x.max() / x.min() > 20:
        ax.set_xscale("log")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, Path(path))


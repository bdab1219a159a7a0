"""Campaign report: a markdown table and PNG plots (matplotlib, Agg canvas, no pyplot).

Written to ``<campaign dir>/report/``:

``report.md``            summary, best arm across the context range, arms tried, all rounds
``rewards.png``          reward per round with the best so far; regret per round and its
                         running mean where the best arm is known (synthetic rewards), else the
                         regret the final GP estimates (best posterior mean - that of the arm
                         played)
``arms_vs_context.png``  per stage, the best arm by posterior mean along the first context
                         parameter (the others at mid-range) and the arms played, coloured by
                         reward
``posterior.png``        posterior mean reward (+- sd) of the leading arms along that parameter
``heldout.png``          with a held-out table (``ddpinn metalic heldout``): the error of the
                         campaign's choice, the XPINN default, a random set, the best fixed set
                         and every arm at each held-out context
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ddpinn.io.atomic import atomic_write_text
from ddpinn.io.config import ConfigError
from ddpinn.io.figures import new_figure, save_figure
from ddpinn.metalic.arms import abbreviate
from ddpinn.metalic.state import counts
from ddpinn.metalic.suggest import bandit_of, models

N_GRID = 101


def _grid(bandit, n=N_GRID):
    """Standardised contexts along the first parameter (others at 0.5) and its values."""
    z = np.full((n, len(bandit.contexts)), 0.5)
    z[:, 0] = np.linspace(0.0, 1.0, n)
    p = bandit.contexts.params[0]
    return z, p.from_unit(z[:, 0]), p


def _best_along(bandit, ms, zs):
    """Per stage: best arm and posterior (mu, sd) of all arms at each grid context."""
    out = [{"best": [], "mu": [], "sd": []} for _ in ms]
    for z in zs:
        for s, (mu, sd, best) in enumerate(bandit.posterior(z, ms)):
            out[s]["best"].append(best)
            out[s]["mu"].append(mu)
            out[s]["sd"].append(sd)
    return [{k: np.array(v) for k, v in d.items()} for d in out]


def _reward_text(r: dict) -> str:
    src = r["source"]
    if src == "synthetic":
        return f"synthetic function {r.get('function')!r}"
    if src == "reference":
        return f"-log10 relative L2 error of {r['key'][3:] or 'u'} vs {r.get('reference')}"
    if src == "errors":
        return f"-log10 {r['key']} (errors.json)"
    return f"-log10 {r['key']} (metrics.jsonl, last value)"


def _fmt_ctx(ctx: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in ctx.items())


def _conds(arms, a) -> str:
    return arms.label(a).split(" ", 1)[1].strip("()")


def write_report(state: dict, out_dir, title: str = "", heldout_dir=None) -> list:
    """Write report.md and the plots; returns the paths written.

    heldout_dir : a campaign's ``heldout/`` directory; when it holds a complete table
        (``ddpinn metalic heldout``), the comparison is recomputed with this state and added.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bandit = bandit_of(state)
    done = [r for r in state["rounds"] if r["status"] == "done"]
    ms = models(state, bandit)
    written = []
    if ms is not None:
        zs, xs, p0 = _grid(bandit)
        along = _best_along(bandit, ms, zs)
        written.append(_plot_arms(bandit, done, xs, p0, along, out_dir / "arms_vs_context.png"))
        written.append(_plot_posterior(bandit, xs, p0, along, out_dir / "posterior.png"))
    if done:
        written.append(_plot_rewards(bandit, ms, done, out_dir / "rewards.png"))
    md = _markdown(state, bandit, ms, done, title, [p.name for p in written])
    section = _heldout_section(state, bandit, heldout_dir, out_dir, written)
    if section:
        md = md.rstrip("\n") + "\n\n" + section
    atomic_write_text(out_dir / "report.md", md)
    return [out_dir / "report.md"] + written


def _heldout_section(state, bandit, heldout_dir, out_dir, written) -> str:
    """Markdown of the held-out comparison (and its plot appended to ``written``), or ""."""
    from ddpinn.metalic import heldout

    if heldout_dir is None or not (Path(heldout_dir) / heldout.RESULTS).is_file():
        return ""
    d = Path(heldout_dir)
    table = json.loads((d / heldout.RESULTS).read_text())
    default = heldout.XPINN_DEFAULT
    if (d / "comparison.json").is_file():
        default = tuple(json.loads((d / "comparison.json").read_text()).get("default_set",
                                                                             default))
    try:
        cmp = heldout.compare(table, state, default)
    except ConfigError as exc:
        return f"## Held-out comparison\n\nnot available: {exc}\n"
    written.append(heldout.plot(cmp, out_dir / "heldout.png"))
    return ("## Held-out comparison\n\n" + heldout.markdown(cmp, bandit.arms.describe)
            + "\n![heldout.png](heldout.png)\n")


# -- plots ----------------------------------------------------------------------------------
def _plot_rewards(bandit, ms, done, path):
    fig = new_figure(7.5, 6.0)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ids = np.array([r["id"] for r in done])
    final = np.array([r["rewards"][-1] for r in done])
    warm = np.array([r["how"] in ("warmup", "random") for r in done])
    ax1.scatter(ids[warm], final[warm], c="0.6", s=18, label="warm-up (random arm)")
    ax1.scatter(ids[~warm], final[~warm], c="C0", s=18, label="bandit choice")
    ax1.plot(ids, np.maximum.accumulate(final), "C1-", label="best so far")
    ax1.set_ylabel("reward  (-log10 error)")
    ax1.legend(loc="best", fontsize=8)
    ax1.grid(alpha=0.3)
    known = all((r.get("raw") or {}).get("regret") is not None for r in done)
    if known:
        regret = np.array([r["raw"]["regret"] for r in done])
        what = "regret (known best arm)"
    elif ms is not None:
        regret = []
        for r in done:
            post = bandit.posterior(np.asarray(r["z"]), ms, given=r["arms"][:-1])
            mu = post[-1][0]
            regret.append(float(mu.max() - mu[r["arms"][-1]]))
        regret = np.array(regret)
        what = "regret estimated by the final GP"
    else:
        regret = None
    if regret is not None:
        ax2.plot(ids, regret, "C3.", ms=5, label=what)
        ax2.plot(ids, np.cumsum(regret) / np.arange(1, len(regret) + 1), "C3-",
                 label="running mean")
        ax2.legend(loc="upper right", fontsize=8)
    ax2.set_xlabel("round")
    ax2.set_ylabel("regret")
    ax2.grid(alpha=0.3)
    return save_figure(fig, path)


def _arm_axis(ax, arms, used):
    used = sorted(used)
    ax.set_yticks(used)
    ax.set_yticklabels([f"{arms.masks[a]} {_conds(arms, a)}" for a in used], fontsize=7)


def _plot_arms(bandit, done, xs, p0, along, path):
    stages = bandit.stages
    fig = new_figure(8.0, 3.2 * stages + 0.8)
    axes = np.atleast_1d(fig.subplots(stages, 1, sharex=True))
    arms = bandit.arms
    for s, ax in enumerate(axes):
        best = along[s]["best"]
        played = [r["arms"][s] for r in done]
        used = set(best.tolist()) | set(played)
        ax.step(xs, best, where="mid", color="k", lw=2, label="best by posterior mean")
        if done:
            cx = [r["context"][p0.name] for r in done]
            sc = ax.scatter(cx, played, c=[r["rewards"][s] for r in done], cmap="viridis",
                            s=30, zorder=3, label="played")
            fig.colorbar(sc, ax=ax, label=f"reward, stage {s + 1}" if stages > 1 else "reward")
        _arm_axis(ax, arms, used)
        ax.set_title(f"stage {s + 1} ({'Adam' if s == 0 else 'L-BFGS'})" if stages > 1
                     else "interface conditions across the context range", fontsize=9)
        if p0.scale == "log":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    axes[-1].set_xlabel(p0.name + (" (other contexts at mid-range)" if len(bandit.contexts) > 1 else ""))
    return save_figure(fig, path)


def _plot_posterior(bandit, xs, p0, along, path, n_arms=6):
    fig = new_figure(7.5, 4.5)
    ax = fig.subplots()
    mu, sd = along[-1]["mu"], along[-1]["sd"]  # (n_grid, n_arms)
    lead = np.argsort(-mu.max(0))[:n_arms]
    for k, a in enumerate(lead):
        ax.plot(xs, mu[:, a], color=f"C{k}", label=f"{bandit.arms.masks[a]} {_conds(bandit.arms, a)}")
        ax.fill_between(xs, mu[:, a] - sd[:, a], mu[:, a] + sd[:, a], color=f"C{k}", alpha=0.15)
    if p0.scale == "log":
        ax.set_xscale("log")
    ax.set_xlabel(p0.name)
    ax.set_ylabel("posterior mean reward +- sd" +
                  (" (final, given the best stage-1 arm)" if bandit.stages > 1 else ""))
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# -- markdown -------------------------------------------------------------------------------
def _markdown(state, bandit, ms, done, title, plots) -> str:
    spec, arms = state["spec"], bandit.arms
    c = counts(state)
    lines = [f"# METALIC campaign {title or spec.get('name', '')}", ""]
    lines.append(f"- PDE: {spec.get('pde') or 'synthetic'}; contexts: " + ", ".join(
        f"{n} in [{v['low']:g}, {v['high']:g}] ({v['scale']})" for n, v in spec["contexts"].items()))
    lines.append(f"- {bandit.stages}-stage bandit over {len(arms)} arms (masks over: "
                 + ", ".join(f"{i}:{abbreviate(cnd)}" for i, cnd in enumerate(arms.candidates))
                 + f"); reward: {_reward_text(spec['reward'])}")
    lines.append(f"- rounds: {c['done']} done, {c['failed']} failed, {c['running']} running, "
                 f"{c['pending']} pending")
    if state.get("models"):
        for s, k in enumerate(state["models"].get("kernels", [])):
            lines.append(f"- GP {s + 1}: `{k}`")
    lines.append("")
    if ms is not None:
        lines += ["## Best interface conditions by posterior mean", ""]
        head = "| " + " | ".join(bandit.contexts.names) + " | " + " | ".join(
            f"stage {s + 1} arm | mean +- sd" if bandit.stages > 1 else "arm | mean reward +- sd"
            for s in range(bandit.stages)) + " |"
        lines += [head, "|" + "---|" * (len(bandit.contexts) + 2 * bandit.stages)]
        for q in np.linspace(0, 1, 7):
            z = np.full(len(bandit.contexts), 0.5)
            z[0] = q
            ctx = bandit.contexts.values(z)
            cells = [f"{ctx[n]:.4g}" for n in bandit.contexts.names]
            for mu, sd, best in bandit.posterior(z, ms):
                cells += [f"`{arms.masks[best]}` {_conds(arms, best)}",
                          f"{mu[best]:.2f} +- {sd[best]:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if done:
        which = " (stage 2, final reward)" if bandit.stages > 1 else ""
        lines += [f"## Arms played{which}", "",
                  "| arm | conditions | rounds | mean reward | best reward |",
                  "|---|---|---|---|---|"]
        per = {}
        for r in done:
            per.setdefault(r["arms"][-1], []).append(r["rewards"][-1])
        for a, rs in sorted(per.items(), key=lambda kv: -np.mean(kv[1])):
            lines.append(f"| `{arms.masks[a]}` | {arms.describe(a)} | {len(rs)} | "
                         f"{np.mean(rs):.3f} | {np.max(rs):.3f} |")
        lines.append("")
    lines += ["## Rounds", "", "| round | context | arm(s) | how | reward(s) | error | status |",
              "|---|---|---|---|---|---|---|"]
    for r in state["rounds"]:
        rw = ", ".join(f"{v:.3f}" for v in r["rewards"]) if r.get("rewards") else ""
        raw = r.get("raw") or {}
        err = f"{raw['value']:.3e}" if isinstance(raw.get("value"), float) else \
            ("diverged" if raw.get("diverged") else r.get("error", "") or "")
        lines.append(f"| {r['id']} | {_fmt_ctx(r['context'])} | "
                     f"{' -> '.join('`' + m + '`' for m in r['masks'])} | {r['how']} | {rw} | "
                     f"{str(err)[:60]} | {r['status']} |")
    lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)

"""METALIC on held-out contexts: the campaign's choice against fixed interface-condition sets.

Runs a campaign (unless its budget is already done), then ``ddpinn metalic heldout``: every arm
is trained once at K contexts the campaign never drew, and the error of the METALIC choice
(best posterior mean at each context) is compared with the XPINN default set, a random set and
the best fixed set (the one arm with the lowest mean error over those contexts, found with
hindsight). Writes a BENCHMARKS.md section and bench/figures/metalic_heldout_<name>.png.

    python bench/metalic_heldout.py campaigns/advection_beta.toml -k 10 --jobs 2 --ranks 1
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ddpinn(*args) -> list:
    return [sys.executable, "-m", "ddpinn.cli", *map(str, args)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("campaign", type=Path)
    ap.add_argument("--dir", type=Path, help="campaign directory (default: the file's)")
    ap.add_argument("-k", "--contexts", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2, help="campaign workers and held-out runs "
                                                        "at a time")
    ap.add_argument("--ranks", type=int, default=1, help="ranks per training run")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    from ddpinn.metalic.campaign import load_campaign
    from ddpinn.metalic.heldout import markdown
    from ddpinn.metalic.state import StateFile, counts

    camp = load_campaign(args.campaign, args.dir)
    where = ["--dir", camp.dir]
    launch = ["--launcher", "" if args.ranks == 1 else f"mpiexec -n {args.ranks}",
              "--ranks", args.ranks]
    workers = [subprocess.Popen(ddpinn("metalic", "run", args.campaign, *where, *launch))
               for _ in range(args.jobs)]
    if any(w.wait() for w in workers):
        print("campaign workers failed", file=sys.stderr)
        return 1
    state = StateFile(camp.state_path).read()
    c = counts(state)
    rc = subprocess.run(ddpinn("metalic", "heldout", args.campaign, *where, "-k", args.contexts,
                               "-j", args.jobs, *launch)).returncode
    if rc:
        return rc
    cmp = json.loads((camp.dir / "heldout" / "comparison.json").read_text())
    table = json.loads((camp.dir / "heldout" / "results.json").read_text())
    fig_dir = ROOT / "bench" / "figures"
    fig_dir.mkdir(exist_ok=True)
    fig = fig_dir / f"metalic_heldout_{camp.settings.name}.png"
    shutil.copyfile(camp.dir / "heldout" / "heldout.png", fig)

    arms = camp.arms
    m = cmp["methods"]
    name = camp.contexts.names[0]
    per_ctx = [f"| {name} | METALIC arm | METALIC | default | best fixed | oracle |",
               "|---|---|---|---|---|---|"]
    for i, ctx in enumerate(cmp["contexts"]):
        a = m["metalic"]["arms"][i]
        per_ctx.append(f"| {ctx[name]:.4g} | `{arms.masks[a]}` | "
                       + " | ".join(f"{m[k]['errors'][i]:.2e}" for k in
                                    ("metalic", "default", "best fixed", "oracle")) + " |")
    mm = m["metalic"]["mean"]
    ratios = ("Mean error of the METALIC choice relative to: " + ", ".join(
        f"{k} {mm / m[k]['mean']:.2f}x" for k in ("default", "random (expected)", "best fixed",
                                                 "oracle")) + "; geometric mean: " + ", ".join(
        f"{k} {m['metalic']['geomean'] / m[k]['geomean']:.2f}x" for k in
        ("default", "random (expected)", "best fixed", "oracle")) + ".")
    seconds = [s for row in table["seconds"] for s in row if s]
    command = " ".join(shlex.quote(a) for a in ["python", "bench/metalic_heldout.py",
                                                *sys.argv[1:]])
    ranges = ", ".join(f"{n} in [{p.low:g}, {p.high:g}] ({p.scale})"
                       for n, p in zip(camp.contexts.names, camp.contexts.params))
    body = f"""
Command: `{command}` (campaign `{args.campaign}`; {os.cpu_count()}-core CPU machine shared with
other jobs; every run with one thread; float32).

- Campaign: {camp.pde_name}, {ranges}; {len(arms)} arms; {camp.settings.policy} with
  {camp.settings.warmup} random warm-up rounds; {c['done']} rounds done, each a short run
  (the campaign's `[run] set`).
- Held-out: {len(cmp['contexts'])} contexts at the midpoints of equal bins of the
  standardised range (none drawn by the campaign); every arm trained once at each with the
  same settings: {len(seconds)} runs, median {sorted(seconds)[len(seconds) // 2]:.0f} s each,
  {sum(seconds) / 60:.0f} min in all. The METALIC choice is made from the campaign's rounds only.

{markdown(cmp, arms.describe)}
{ratios}

Default = XPINN's set ({', '.join(cmp.get('default_set', []))}). Random = one uniformly random
arm per context (seed 0); "random (expected)" averages over all arms. Best fixed = the single arm
with the lowest mean log error over these contexts, chosen with hindsight. Oracle = the best arm
at each context.

{chr(10).join(per_ctx)}

![METALIC held-out comparison](bench/figures/{fig.name})
"""
    update_section(args.out, f"METALIC held-out comparison: {camp.settings.name}", body)
    print(f"wrote {args.out} and {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ddpinn metalic ...``: campaign commands (their arguments: :mod:`ddpinn.metalic.cli`).

run CAMPAIGN           train rounds here until the campaign's budget is issued and done
work CAMPAIGN -r K     claim, train and record at most K rounds (a Slurm array task)
next CAMPAIGN          claim one round and print its training command (--run: train it too)
record CAMPAIGN ROUND  read a round's run directory and record its reward (after ``next``)
status CAMPAIGN        rounds by status, claims in flight
suggest CAMPAIGN --context nu=0.01   the best conditions by posterior mean
heldout CAMPAIGN -k 10 every arm at 10 held-out contexts: the campaign's choice against the
                       XPINN default, a random set and the best fixed set
report CAMPAIGN        report.md and plots in <campaign dir>/report/ (with the held-out
                       comparison when there is one)
"""
from __future__ import annotations

import json
import logging
import shlex
import signal
import sys
import time
from pathlib import Path

from ddpinn.io.config import ConfigError
from ddpinn.metalic.campaign import _toml_value
from ddpinn.parallel.errors import EXIT_CONFIG, EXIT_REQUEUE


def _err(msg: str, code: int = EXIT_CONFIG) -> int:
    sys.stderr.write(f"ddpinn: error: {msg}\n")
    return code


def _campaign(args, check_case=True):
    from ddpinn.metalic.campaign import load_campaign

    return load_campaign(args.campaign, getattr(args, "dir", None), check_case=check_case)


def _read_state(args):
    """State of a campaign file, a campaign directory or a state file (read-only)."""
    from ddpinn.metalic.state import StateFile
    from ddpinn.metalic.suggest import state_path_of

    p = Path(args.campaign)
    sp = (_campaign(args, check_case=False).state_path if p.suffix == ".toml"
          else state_path_of(p))
    state = StateFile(sp).read()
    if state is None:
        raise ConfigError(f"no campaign state at {str(sp)!r} yet (start the campaign with "
                          f"'ddpinn metalic run' or 'work')")
    return state, sp


def cmd_work(args, default_rounds=None) -> int:
    from ddpinn.metalic.runner import Interrupted, work

    campaign = _campaign(args)
    rounds = args.rounds if args.rounds is not None else default_rounds
    t0 = time.time()
    try:
        out = work(campaign, rounds, args.launcher, args.ranks)
    except Interrupted as exc:
        return EXIT_REQUEUE if exc.signum in (signal.SIGUSR1, signal.SIGTERM) else \
            128 + int(exc.signum)
    sys.stderr.write(f"ddpinn metalic: {sum(out.values())} round(s) in {time.time() - t0:.0f} s "
                     f"({', '.join(f'{v} {k}' for k, v in out.items() if v)}); state in "
                     f"{campaign.state_path}\n")
    _print_status(campaign.state_path)
    return 0


def cmd_next(args) -> int:
    from ddpinn.metalic.runner import claim_next

    if args.run:
        args.rounds = 1
        return cmd_work(args)
    campaign = _campaign(args)
    rnd = claim_next(campaign, with_pid=False)
    if rnd is None:
        print("# nothing to claim: the campaign's rounds are all issued (see 'ddpinn metalic "
              "status')", file=sys.stderr)
        return 0
    if campaign.reward.source == "synthetic":
        from ddpinn.metalic.reward import synthetic_result
        from ddpinn.metalic.runner import record

        outcome = record(campaign, rnd["id"], rnd["claim"]["token"], synthetic_result(campaign, rnd))
        print(f"# round {rnd['id']} (synthetic) {outcome}")
        return 0
    cmd = campaign.command(rnd["context"], rnd["arms"], Path(rnd["run_dir"]), args.launcher,
                           args.ranks)
    rec = ["ddpinn", "metalic", "record", str(args.campaign), str(rnd["id"]),
           "--token", rnd["claim"]["token"]] + (["--dir", args.dir] if args.dir else [])
    if args.json:
        print(json.dumps({"round": rnd["id"], "token": rnd["claim"]["token"],
                          "context": rnd["context"], "masks": rnd["masks"],
                          "run_dir": rnd["run_dir"], "command": cmd, "record": rec}))
    else:
        print(f"# round {rnd['id']}: {rnd['context']} {' -> '.join(rnd['masks'])}; after "
              f"training: {shlex.join(rec)} --exit $?")
        print(shlex.join(cmd))
    return 0


def cmd_record(args) -> int:
    from ddpinn.metalic.reward import run_result
    from ddpinn.metalic.runner import _tail, record
    from ddpinn.metalic.state import StateFile

    campaign = _campaign(args)
    state = StateFile(campaign.state_path).read()
    if state is None or not 0 <= args.round < len(state["rounds"]):
        return _err(f"no round {args.round} in {campaign.state_path}")
    rnd = state["rounds"][args.round]
    result = run_result(campaign, rnd, args.exit, _tail(Path(rnd["run_dir"]) / "metalic.log"))
    outcome = record(campaign, args.round, args.token, result)
    print(f"round {args.round}: {outcome}" + (
        f", reward {', '.join(f'{v:.3f}' for v in result['rewards'])}"
        if result.get("rewards") else f" ({result.get('error')})"))
    return 0 if outcome != "failed" else 1


def _print_status(path) -> None:
    from ddpinn.metalic.state import StateFile, counts, is_stale

    state = StateFile(path).read()
    if state is None:
        return
    c = counts(state)
    print(f"{path}: {len(state['rounds'])} rounds issued: {c['done']} done, {c['running']} "
          f"running, {c['pending']} pending, {c['failed']} failed")
    now = time.time()
    for r in state["rounds"]:
        if r["status"] == "running":
            cl = r.get("claim") or {}
            print(f"  round {r['id']}: {cl.get('host')} pid {cl.get('pid')} job {cl.get('job')}"
                  f", heartbeat {now - float(cl.get('heartbeat', now)):.0f} s ago"
                  f"{' (stale)' if is_stale(cl, float('inf')) else ''}")


def cmd_status(args) -> int:
    _, sp = _read_state(args)
    _print_status(sp)
    return 0


def cmd_suggest(args) -> int:
    from ddpinn.metalic.contexts import ContextError, parse_context
    from ddpinn.metalic.suggest import suggest

    state, _ = _read_state(args)
    try:
        context = parse_context(args.context)
    except ContextError as exc:
        return _err(str(exc))
    names = list(state["spec"]["contexts"])
    missing = [n for n in names if n not in context]
    if missing:
        return _err(f"give --context {','.join(f'{n}=VALUE' for n in missing)} (the campaign's "
                    f"contexts: {', '.join(names)})")
    extra = [n for n in context if n not in names]
    if extra:
        return _err(f"--context names {', '.join(extra)}, not a context of the campaign "
                    f"({', '.join(names)})")
    s = suggest(state, context, top=args.top)
    if args.json:
        print(json.dumps(s, indent=1))
        return 0
    ctx = ", ".join(f"{k}={v:g}" for k, v in s["context"].items())
    warn = f" (outside the campaign's range: {', '.join(s['out_of_range'])})" \
        if s["out_of_range"] else ""
    print(f"best interface conditions at {ctx}{warn}, from {s['n_rounds']} rounds:")
    for k, st in enumerate(s["stages"]):
        label = f"stage {k + 1} ({'Adam' if k == 0 else 'L-BFGS'})" if len(s["stages"]) > 1 \
            else "all stages"
        print(f"  {label}: {st['mask']}  {_toml_value(st['conditions'])}  "
              f"reward {st['mean']:.2f} +- {st['sd']:.2f}")
        for a, mask, mu, sd in st["ranking"][1:]:
            print(f"      then {mask}  reward {mu:.2f} +- {sd:.2f}")
    if len(s["stages"]) == 1:
        print(f"  --set 'interface.conditions={_toml_value(s['stages'][0]['conditions'])}'")
    return 0


def cmd_report(args) -> int:
    from ddpinn.metalic.report import write_report

    state, sp = _read_state(args)
    out = Path(args.out) if args.out else sp.parent / "report"
    for p in write_report(state, out, state["spec"].get("name", ""), sp.parent / "heldout"):
        print(p)
    return 0


def cmd_heldout(args) -> int:
    from ddpinn.io.atomic import atomic_write_text
    from ddpinn.metalic import heldout
    from ddpinn.metalic.state import StateFile

    campaign = _campaign(args)
    if args.contexts < 1 or args.jobs < 1:
        return _err("--contexts and --jobs must be >= 1")
    default = tuple(c.strip() for c in args.default.split(",")) if args.default else \
        heldout.XPINN_DEFAULT
    heldout.default_arm(campaign.arms, default)  # a bad --default fails before any training
    state = StateFile(campaign.state_path).read()
    if state is None:
        return _err(f"no campaign state at {str(campaign.state_path)!r}; run the campaign "
                    f"first: ddpinn metalic run {args.campaign}")
    table = heldout.run_table(campaign, args.contexts, args.jobs, args.launcher, args.ranks,
                              echo=lambda m: print(m, file=sys.stderr, flush=True))
    cmp = heldout.compare(table, state, default)
    cmp["default_set"] = list(default)
    out = campaign.dir / "heldout"
    atomic_write_text(out / "comparison.json", json.dumps(cmp, indent=1))
    heldout.plot(cmp, out / "heldout.png")
    print(heldout.markdown(cmp, campaign.arms.describe))
    print(f"written: {out / 'comparison.json'}, {out / 'heldout.png'}")
    return 0


COMMANDS = {"run": lambda a: cmd_work(a, None), "work": lambda a: cmd_work(a, 1),
            "next": cmd_next, "record": cmd_record, "status": cmd_status,
            "suggest": cmd_suggest, "report": cmd_report, "heldout": cmd_heldout}


def dispatch(args) -> int:
    """Run ``ddpinn metalic <command>``; bad input is one message and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ddpinn %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        return COMMANDS[args.metalic_command](args)
    except ConfigError as exc:  # CampaignError included
        return _err(str(exc))
    except ImportError as exc:
        return _err(str(exc))

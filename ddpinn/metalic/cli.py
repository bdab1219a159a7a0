"""The ``ddpinn metalic ...`` subcommands: their arguments (the commands themselves are in
:mod:`ddpinn.metalic.commands`, imported when one runs)."""
from __future__ import annotations


def cmd_metalic(args) -> int:
    """Run the ``ddpinn metalic`` subcommand of ``args``; its exit status."""
    from ddpinn.metalic.commands import dispatch

    return dispatch(args)


def add_metalic_parser(sub) -> None:
    """Add ``ddpinn metalic ...`` to the subcommands ``sub`` of the ``ddpinn`` parser."""
    met = sub.add_parser("metalic", help="learn interface conditions per PDE parameters "
                                         "(METALIC bandit campaigns)")
    msub = met.add_subparsers(dest="metalic_command", required=True)

    def campaign_parser(name, help_, campaign_help="campaign file (TOML)"):
        q = msub.add_parser(name, help=help_)
        q.add_argument("campaign", help=campaign_help)
        q.add_argument("--dir", help="campaign directory (state.json, runs/, report/); "
                                     "default: campaign.dir of the file")
        return q

    def training(q):
        q.add_argument("--launcher", help="launcher of the training runs, e.g. "
                                          "'srun --mpi=pmi2 -n {ranks}' (default: run.launcher)")
        q.add_argument("--ranks", type=int, help="ranks per training run (default: run.ranks)")

    q = campaign_parser("run", "train rounds until the campaign's budget is done")
    q.add_argument("--rounds", type=int, help="stop after this many rounds here")
    training(q)
    q = campaign_parser("work", "claim, train and record up to K rounds (Slurm array task)")
    q.add_argument("--rounds", "-r", type=int, help="rounds to work through (default 1)")
    training(q)
    q = campaign_parser("next", "claim one round and print its training command")
    q.add_argument("--run", action="store_true", help="train and record it here instead")
    q.add_argument("--json", action="store_true", help="print the claim as JSON")
    training(q)
    q = campaign_parser("record", "record the reward of a round trained after 'next'")
    q.add_argument("round", type=int)
    q.add_argument("--token", help="the claim token printed by 'next'")
    q.add_argument("--exit", type=int, default=0, help="exit status of the training run")
    state_help = "campaign file, campaign directory or state.json"
    campaign_parser("status", "rounds by status and claims in flight", state_help)
    q = campaign_parser("suggest", "best interface conditions by posterior mean", state_help)
    q.add_argument("--context", action="append", default=[], metavar="NAME=VALUE",
                   help="PDE parameters, e.g. --context nu=0.01 (repeat or comma-separate)")
    q.add_argument("--top", type=int, default=3, help="also list the runners-up")
    q.add_argument("--json", action="store_true")
    q = campaign_parser("heldout", "train every arm at held-out contexts and compare the "
                                   "campaign's choice with fixed sets")
    q.add_argument("--contexts", "-k", type=int, default=10, help="held-out contexts (default 10)")
    q.add_argument("--jobs", "-j", type=int, default=1, help="training runs at a time (default 1)")
    q.add_argument("--default", help="the fixed default set, comma-separated conditions "
                                     "(default: average_solution,residual_continuity, XPINN's)")
    training(q)
    q = campaign_parser("report", "write report.md and plots", state_help)
    q.add_argument("--out", help="output directory (default: <campaign dir>/report)")
    met.set_defaults(func=cmd_metalic)

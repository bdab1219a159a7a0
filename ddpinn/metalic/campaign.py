"""Campaign files: what a METALIC campaign learns, over which PDE parameters, and how a round
is trained.

A campaign file is TOML (data only); paths in it are relative to the file::

    [campaign]
    name = "burgers_nu"
    case = "../cases/burgers1d.toml"   # the case every round trains (with overrides)
    dir = ""             # state.json, rounds' runs and the report (default runs/metalic/<name>)
    rounds = 40          # budget: rounds issued in all
    seed = 0
    stages = 1           # 1: one arm per run; 2: one arm for the Adam and one for the L-BFGS stage
    policy = "ucb"       # ucb | thompson
    beta = 4.0           # UCB: mean + sqrt(beta) * sd
    warmup = 6           # rounds with random arms before the GP decides
    arm_kernel = "hamming"   # hamming | ard
    refit_every = 1      # GP hyperparameters refitted every k finished rounds (else conditioned)
    restarts = 2         # GP optimizer restarts

    [contexts.nu]        # one table per PDE parameter (pde.params.nu)
    low = 0.001
    high = 0.05
    scale = "log"        # linear | log

    [arms]
    candidates = ["solution_continuity", "average_solution", ...]  # mask order (default: all)
    list = [["average_solution", "residual_continuity"], "110000000"]  # optional: the arms
    max_size = 3         # without list: every non-empty subset of at most max_size candidates
    separate = false     # true: an arm is a pair of sets, one for space and one for time
                         # interfaces (list entries {space = [...], time = [...]}); a plain
                         # list then means the same set on both
    weights = { average_solution = 20.0 }   # condition weights (default: the case's)

    [reward]
    source = "errors"    # errors | metric | reference | synthetic
    key = "l2_u"         # errors.json key (errors) or metrics.jsonl column (metric)
    reference = ""       # source = "reference": a reference computed here (burgers_cole_hopf)
    function = "one_stage"   # source = "synthetic": a function of ddpinn.metalic.synthetic
    noise = 0.05         # synthetic: standard deviation of the noise added
    cap = 8.0            # reward = clip(-log10(value), floor, cap)
    floor = 0.0

    [run]
    ranks = 2
    launcher = "mpiexec -n {ranks}"   # e.g. "srun --mpi=pmi2 -n {ranks}" inside Slurm
    python = ""          # interpreter of the training runs (default: this one)
    timeout = 3600.0     # seconds per round
    max_attempts = 2     # a round whose run fails this often is marked failed
    lease = 900.0        # seconds without heartbeat after which a claimed round is re-issued
    heartbeat = 30.0
    set = ["stages.0.steps=300", "stages.1.steps=50"]   # --set overrides of every round
"""
from __future__ import annotations

import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ddpinn.io.config import ConfigError, build_section, check_choice
from ddpinn.interface.conditions import KINDS
from ddpinn.metalic.arms import ArmError, ArmSpace
from ddpinn.metalic.contexts import ContextError, ContextParam, ContextSpace

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

SOURCES = ("errors", "metric", "reference", "synthetic")
POLICIES = ("ucb", "thompson")


class CampaignError(ConfigError):
    """A campaign file that cannot be used; the message names the field."""


@dataclass
class CampaignSection:
    name: str = ""
    case: str = ""
    dir: str = ""
    rounds: int = 20
    seed: int = 0
    stages: int = 1
    policy: str = "ucb"
    beta: float = 4.0
    warmup: int = 6
    arm_kernel: str = "hamming"
    refit_every: int = 1
    restarts: int = 2


@dataclass
class ArmsSection:
    candidates: list = field(default_factory=list)
    list: list = field(default_factory=list)
    max_size: int = 0
    separate: bool = False  # separate sets for space and time interfaces
    weights: dict = field(default_factory=dict)


@dataclass
class RewardSection:
    source: str = "errors"
    key: str = "l2_u"
    reference: str = ""
    function: str = "one_stage"
    noise: float = 0.05
    cap: float = 8.0
    floor: float = 0.0


@dataclass
class RunSection:
    ranks: int = 2
    launcher: str = "mpiexec -n {ranks}"
    python: str = ""
    timeout: float = 3600.0
    max_attempts: int = 2
    lease: float = 900.0
    heartbeat: float = 30.0
    set: list = field(default_factory=list)


def _section(cls, data, where: str):
    """The case-file parser's section checks, reported as :class:`CampaignError`."""
    try:
        return build_section(cls, data, where + ".")
    except ConfigError as exc:
        raise CampaignError(str(exc)) from None


def _choice(where: str, value, allowed) -> None:
    try:
        check_choice(where, value, allowed)
    except ConfigError as exc:
        raise CampaignError(str(exc)) from None


def _toml_value(v) -> str:
    """A Python value as a TOML literal for ``--set``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML literal for {v!r}")


class Campaign:
    """A parsed, validated campaign file.

    Attributes
    ----------
    path : Path of the campaign file
    settings, arms_cfg, reward, run : its sections
    contexts : ContextSpace; arms : ArmSpace
    case : Path of the case file or None (synthetic campaigns need none)
    dir : Path, where state.json, runs/ and report/ live
    """

    def __init__(self, path, data: dict, dir_override=None, check_case: bool = True):
        self.path = Path(path)
        known = {"campaign", "contexts", "arms", "reward", "run"}
        for key in data:
            if key not in known:
                raise CampaignError(f"unknown table [{key}] in campaign {str(self.path)!r}; "
                                    f"allowed: {', '.join(sorted(known))}")
        self.settings = _section(CampaignSection, data.get("campaign", {}), "campaign")
        self.arms_cfg = _section(ArmsSection, data.get("arms", {}), "arms")
        self.reward = _section(RewardSection, data.get("reward", {}), "reward")
        self.run = _section(RunSection, data.get("run", {}), "run")
        s, r = self.settings, self.reward
        if not s.name:
            s.name = self.path.stem
        _choice("campaign.stages", s.stages, (1, 2))
        _choice("campaign.policy", s.policy, POLICIES)
        _choice("campaign.arm_kernel", s.arm_kernel, ("hamming", "ard"))
        _choice("reward.source", r.source, SOURCES)
        for where, value, low in (("campaign.rounds", s.rounds, 1), ("campaign.warmup", s.warmup, 0),
                                  ("campaign.refit_every", s.refit_every, 1),
                                  ("campaign.restarts", s.restarts, 0),
                                  ("run.ranks", self.run.ranks, 1),
                                  ("run.max_attempts", self.run.max_attempts, 1),
                                  ("run.timeout", self.run.timeout, 1.0),
                                  ("run.lease", self.run.lease, 1.0),
                                  ("run.heartbeat", self.run.heartbeat, 0.1),
                                  ("campaign.beta", s.beta, 0.0), ("reward.noise", r.noise, 0.0)):
            if value < low:
                raise CampaignError(f"field {where!r} = {value!r} must be >= {low}")
        if not r.cap > r.floor:
            raise CampaignError(f"field 'reward.cap' = {r.cap!r} must be greater than "
                                f"'reward.floor' = {r.floor!r}")
        for i, item in enumerate(self.run.set):
            if not isinstance(item, str) or "=" not in item:
                raise CampaignError(f"field 'run.set[{i}]' = {item!r} must be a string "
                                    f"key=value (a --set override)")
        # contexts
        ctx = data.get("contexts", {})
        if not isinstance(ctx, dict):
            raise CampaignError("[contexts] must hold one table per parameter: "
                                "[contexts.NAME] with low, high (and scale)")
        try:
            params = []
            for name, t in ctx.items():
                if not isinstance(t, dict):
                    raise ContextError(f"field 'contexts.{name}' must be a table with low, "
                                       f"high and optionally scale")
                extra = set(t) - {"low", "high", "scale"}
                if extra:
                    raise ContextError(f"unknown field 'contexts.{name}.{sorted(extra)[0]}'; "
                                       f"allowed: low, high, scale")
                if "low" not in t or "high" not in t:
                    raise ContextError(f"field 'contexts.{name}' needs low and high")
                params.append(ContextParam(name, t["low"], t["high"], t.get("scale", "linear")))
            self.contexts = ContextSpace(params)
        except ContextError as exc:
            raise CampaignError(str(exc)) from None
        # arms
        a = self.arms_cfg
        try:
            self.arms = ArmSpace(a.candidates or None, a.list or None, a.max_size or None,
                                 KINDS if a.separate else None)
        except ArmError as exc:
            raise CampaignError(str(exc)) from None
        for k, v in a.weights.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise CampaignError(f"field 'arms.weights.{k}' = {v!r} must be a number >= 0")
        # where things live
        # relative to the working directory (like a case's output.dir), made absolute so that
        # the run directories recorded in the state do not depend on where they are read
        self.dir = (Path(dir_override) if dir_override else
                    Path(s.dir) if s.dir else Path("runs") / "metalic" / s.name).absolute()
        self.case = Path(os.path.normpath(self.path.parent / s.case)) if s.case else None
        self.pde_name = None
        self.case_weights = {}
        self.stage_steps = []
        if r.source == "synthetic":
            from ddpinn.metalic.synthetic import FUNCTIONS

            _choice("reward.function", r.function, tuple(FUNCTIONS))
            want = 2 if r.function == "two_stage" else 1
            if want != s.stages:
                raise CampaignError(f"field 'reward.function' = {r.function!r} is a "
                                    f"{want}-stage function but 'campaign.stages' = {s.stages}")
        else:
            if not s.case:
                raise CampaignError("field 'campaign.case' is required (the case file every "
                                    "round trains) unless reward.source = \"synthetic\"")
            if r.source == "reference":
                from ddpinn.references.burgers import REFERENCES

                _choice("reward.reference", r.reference, tuple(REFERENCES))
            if check_case:
                self._check_case()

    # -- the case --------------------------------------------------------------------------
    def _check_case(self) -> None:
        """Load the case with the campaign's overrides and a sample round's, and build its
        problem: a bad campaign fails here, before any round is issued."""
        from ddpinn.io.config import load
        from ddpinn.problem import build_problem

        if not self.case.is_file():
            raise CampaignError(f"field 'campaign.case' = {self.settings.case!r}: no such file "
                                f"{str(self.case)!r} (paths are relative to the campaign file)")
        try:
            base = load(self.case, self.run.set)
        except ConfigError as exc:
            raise CampaignError(f"campaign case {str(self.case)!r} with run.set: {exc}") from None
        self.case_weights = dict(base.interface.weights)
        self.stage_steps = [st.steps for st in base.stages]
        mid = self.contexts.values([0.5] * len(self.contexts))
        try:
            cfg = load(self.case, self.overrides(mid, [0] * self.settings.stages, self.dir / "check"))
            problem = build_problem(cfg)
        except ConfigError as exc:
            raise CampaignError(f"campaign case {str(self.case)!r} with a round's overrides: "
                                f"{exc}") from None
        self.pde_name = problem.pde.name
        if self.arms.kinds:
            have = {i.kind for i in problem.decomposition.interfaces}
            if have != set(KINDS):
                raise CampaignError(f"field 'arms.separate' = true learns separate sets for "
                                    f"space and time interfaces, but the case's decomposition "
                                    f"has {' and '.join(sorted(have)) or 'no'} interfaces only")
        unknown = [n for n in self.contexts.names if n not in problem.pde.params]
        if unknown:
            raise CampaignError(f"contexts {', '.join(unknown)} are not parameters of PDE "
                                f"{problem.pde.name!r}; its parameters: "
                                f"{', '.join(problem.pde.params)}")
        if self.settings.stages == 2 and len(base.stages) < 2:
            raise CampaignError(f"field 'campaign.stages' = 2 but case {str(self.case)!r} has "
                                f"{len(base.stages)} training stage")

    def weights_for(self, conditions) -> dict:
        """Condition weights of a round: the campaign's, else the case's, for active ones."""
        table = self.arms_cfg.weights or self.case_weights
        return {c: float(table[c]) for c in conditions if c in table}

    def overrides(self, context: dict, arms, run_dir) -> list:
        """``--set`` overrides of a round (after the campaign's own ``run.set``)."""
        out = list(self.run.set)
        out += [f"pde.params.{k}={_toml_value(float(v))}" for k, v in context.items()]
        conds = [self.arms.conditions(a) for a in arms]
        union = [c for c in self.arms.candidates
                 if any(c in self.arms.condition_names(a) for a in arms)]
        out.append(f"interface.conditions={_toml_value(conds[0])}")
        out.append(f"interface.weights={_toml_value(self.weights_for(union))}")
        if len(conds) == 2:
            out += [f"stages.{k}.conditions={_toml_value(c)}" for k, c in enumerate(conds)]
            if self.reward.source in ("errors", "metric") and \
                    not any(s.startswith("output.eval_every=") for s in self.run.set) and \
                    self.stage_steps and self.stage_steps[0] > 1:
                # an evaluation inside stage 1 gives its reward (see reward.stage_rewards)
                out.append(f"output.eval_every={self.stage_steps[0] - 1}")
        out.append(f"output.dir={_toml_value(str(run_dir))}")
        out.append("output.plots=false")
        return out

    def command(self, context: dict, arms, run_dir, launcher=None, ranks=None) -> list:
        """The command line that trains a round (a list for subprocess, no shell)."""
        ranks = int(ranks or self.run.ranks)
        launch = (launcher if launcher is not None else self.run.launcher).format(ranks=ranks)
        cmd = shlex.split(launch) + [self.run.python or sys.executable, "-m", "ddpinn.cli",
                                     "run", str(self.case), "--quiet", "--resume", "auto"]
        for item in self.overrides(context, arms, run_dir):
            cmd += ["--set", item]
        return cmd

    # -- bandit ------------------------------------------------------------------------------
    def bandit(self):
        from ddpinn.metalic.bandit import Bandit

        s = self.settings
        return Bandit(self.arms, self.contexts, stages=s.stages, policy=s.policy, beta=s.beta,
                      warmup=s.warmup, arm_kernel=s.arm_kernel, seed=s.seed, restarts=s.restarts)

    def spec(self) -> dict:
        """What a state file must agree with: changing any of it needs a new campaign dir."""
        return {"name": self.settings.name, "stages": self.settings.stages,
                "arms": self.arms.to_dict(), "contexts": self.contexts.to_dict(),
                "arm_kernel": self.settings.arm_kernel, "pde": self.pde_name,
                "reward": {"source": self.reward.source, "key": self.reward.key,
                           "reference": self.reward.reference,
                           "function": self.reward.function}}

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    def run_dir(self, round_id: int) -> Path:
        return self.dir / "runs" / f"round_{round_id:04d}"


def load_campaign(path, dir_override=None, check_case: bool = True) -> Campaign:
    """Read and validate a campaign file; raises :class:`CampaignError`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CampaignError(f"cannot read campaign file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"campaign file {str(path)!r} is not valid TOML: {exc}") from None
    return Campaign(path, data, dir_override, check_case)


def reward_from_value(value: float, cap: float, floor: float) -> float:
    """-log10(value) clipped to [floor, cap]; NaN/inf/non-positive values get the floor or the cap."""
    if value is None or not math.isfinite(value) or value < 0:
        return float(floor)
    if value == 0:
        return float(cap)
    return float(min(cap, max(floor, -math.log10(value))))

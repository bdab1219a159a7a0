"""Case files (TOML) -> typed, validated configuration.

A case file is data only. Every field is declared here with its type and default; unknown
or misspelt fields, wrong types and out-of-range values raise :class:`ConfigError` with one
message naming the field, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from ddpinn.io.config_errors import ConfigError, check_choice  # noqa: F401  (public here)
from ddpinn.io.config_domain import (boundary_tables, check_cuts, data_tables,
                                     domain_from_shape)
from ddpinn.io.config_stages import (StageSection, optimizer_class,  # noqa: F401
                                     resamplers_named, validate_stages)


@dataclass
class CaseSection:
    name: str = "case"
    seed: int = 0
    dtype: str = "float64"


@dataclass
class DomainSection:
    lower: list = field(default_factory=list)
    upper: list = field(default_factory=list)
    time: Optional[list] = None
    periodic: list = field(default_factory=list)
    # a shape (ddpinn.geometry.spec): primitives, an STL surface or CSG; its bounding box is
    # the domain's lower/upper, which are then not given
    shape: dict = field(default_factory=dict)


@dataclass
class DecompositionSection:
    grid: list = field(default_factory=lambda: [1])
    # axis name -> its grid[a] - 1 inner cut positions (axes not named: uniform cells)
    cuts: dict = field(default_factory=dict)


@dataclass
class PDESection:
    name: str = ""
    params: dict = field(default_factory=dict)
    inverse: dict = field(default_factory=dict)


@dataclass
class NetworkSection:
    # a name in ddpinn.nn.architectures.ARCHITECTURES or "package.module:Name" (checked
    # against the registry by ddpinn.problem.build_problem, like pde.name)
    architecture: str = "mlp"
    width: int = 32
    depth: int = 3
    activation: str = "tanh"
    fourier_features: int = 0
    fourier_scale: float = 1.0
    periodic_harmonics: int = 2
    # periodic wavevectors: "axes" (k e_p on each axis) or "mixed" (all k, max |k_p| <= harmonics)
    periodic_modes: str = "axes"
    derivatives: str = "taylor"
    # Taylor engine as one torch.compile-d graph per model (faster steps after a compile)
    compile: bool = False
    # experts of the first time slab meet the initial data exactly (g + (t - t0) / tau * N)
    hard_initial: bool = False


@dataclass
class PointsSection:
    interior: int = 500
    boundary: int = 64
    interface: int = 32
    data: int = 0
    resample_every: int = 0
    resample: str = "uniform"  # how points change every resample_every steps: RESAMPLERS
    sampling: str = "uniform"  # the point sets drawn: UNIT_SAMPLERS (uniform, sobol, halton)


@dataclass
class CausalSection:
    chunks: int = 0  # time chunks of the residual loss (0: no causal weights)
    epsilon: Union[float, list] = 1.0  # a number, or a schedule of increasing numbers
    threshold: float = 0.99  # next epsilon once the smallest weight exceeds this


def _default_conditions() -> list:
    """XPINN's pair, :data:`ddpinn.interface.conditions.DEFAULT_CONDITIONS` (imported when a
    config is built: the conditions module imports torch)."""
    from ddpinn.interface.conditions import DEFAULT_CONDITIONS

    return list(DEFAULT_CONDITIONS)


@dataclass
class InterfaceSection:
    conditions: Union[list, str, dict] = field(default_factory=lambda: _default_conditions())
    weights: dict = field(default_factory=dict)


@dataclass
class LossSection:
    # a number (every equation), a list (one per equation of the PDE's residual) or a table
    # {equation name = weight} (unnamed equations: 1.0); see PDE.equations
    residual: Union[float, list, dict] = 1.0
    boundary: float = 10.0
    data: float = 10.0


@dataclass
class OutputSection:
    dir: str = ""
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    grid: list = field(default_factory=list)
    plots: bool = True
    progress: bool = True
    vtk: bool = False  # also the solution as VTK files for ParaView (needs the vtk package)
    reference_n: int = 0  # grid points per axis of a computed reference (0: the PDE's choice)
    # quantities of interest (ddpinn.quantities_of_interest): forces on boundary pieces,
    # probes {name = [x, y(, t)]} (without t in a time-dependent case: a time series),
    # probe_differences {name = [output, probe a, probe b]}
    forces: list = field(default_factory=list)
    probes: dict = field(default_factory=dict)
    probe_differences: dict = field(default_factory=dict)


@dataclass
class ParallelSection:
    backend: str = "mpi4py"
    threads: int = 0
    device: str = "cpu"
    replicas: int = 1  # ranks sharing one block of experts, each with a share of the points
    wait: str = "auto"  # how a rank waits for messages: auto, spin, yield (see set_threads)
    # evaluate the interface rows first and send their values before the other rows
    early_send: bool = False


@dataclass
class Config:
    case: CaseSection = field(default_factory=CaseSection)
    domain: DomainSection = field(default_factory=DomainSection)
    decomposition: DecompositionSection = field(default_factory=DecompositionSection)
    pde: PDESection = field(default_factory=PDESection)
    network: NetworkSection = field(default_factory=NetworkSection)
    points: PointsSection = field(default_factory=PointsSection)
    interface: InterfaceSection = field(default_factory=InterfaceSection)
    loss: LossSection = field(default_factory=LossSection)
    causal: CausalSection = field(default_factory=CausalSection)
    stages: list = field(default_factory=lambda: [StageSection()])
    # [[boundary]] tables: conditions per boundary tag (ddpinn.boundary); empty: Dirichlet
    # data of the PDE on every face, as boundary_data gives it
    boundary: list = field(default_factory=list)
    # [[data]] tables: files of observations, boundary data or reference solutions
    # (ddpinn.data), checked against the PDE and the domain in ddpinn.problem
    data: list = field(default_factory=list)
    output: OutputSection = field(default_factory=OutputSection)
    parallel: ParallelSection = field(default_factory=ParallelSection)

    # -- derived --------------------------------------------------------------------------
    @property
    def space_dim(self) -> int:
        return len(self.domain.lower)

    @property
    def has_time(self) -> bool:
        return self.domain.time is not None

    @property
    def axis_names(self) -> tuple:
        names = ("x", "y", "z")[: self.space_dim]
        return names + (("t",) if self.has_time else ())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


REQUIRED = {"domain.lower", "domain.upper", "pde.name", "decomposition.grid"}
# Choices with a registry elsewhere (dtypes, activations, derivative engines, backends,
# resamplers, optimizers, schedules) are read from it when a case is validated (see
# _registry_choices; the training modules import torch, config stays light).
WAITS = ("auto", "spin", "yield")
DEVICES = ("cpu", "cuda", "auto")


def _allowed(cls) -> list:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown(path: str, key: str, cls) -> ConfigError:
    allowed = _allowed(cls)
    hint = difflib.get_close_matches(key, allowed, n=1)
    did = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"unknown field {path + key!r}{did}; allowed fields in "
                       f"[{path.rstrip('.') or 'top level'}]: {', '.join(allowed)}")


def _coerce(path: str, value: Any, default: Any, hint) -> Any:
    """Check ``value`` against the type of ``default``/``hint`` (ints widen to float)."""
    if isinstance(default, bool) and "Union" not in str(hint):
        ok = isinstance(value, bool)
        want = "true or false"
    elif isinstance(default, int) and not isinstance(default, bool):
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif isinstance(default, float) and "Union" not in str(hint):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        want = "a number"
    elif isinstance(default, str) and "Union" not in str(hint):
        ok = isinstance(value, str)
        want = "a string"
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
        want = "a table"
    elif (isinstance(default, list) and "Union" not in str(hint)) or \
            (default is None and "list" in str(hint) and "dict" not in str(hint)):
        ok = isinstance(value, list)
        want = "a list"
    else:
        ok, want = True, ""
    if not ok:
        raise ConfigError(f"field {path!r} = {value!r} has the wrong type: expected {want}")
    return value


def build_section(cls, data: dict, path: str):
    """A dataclass section from a TOML table; ``path`` prefixes field names in messages
    (e.g. ``"network."``). Raises :class:`ConfigError` naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{path.rstrip('.')}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    defaults = cls()
    for key, value in data.items():
        if key not in hints:
            raise _unknown(path, key, cls)
        kwargs[key] = _coerce(path + key, value, getattr(defaults, key), hints[key])
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    """Build and validate a :class:`Config` from a parsed TOML table."""
    data = dict(data)
    base_dir = data.pop("_base_dir", None)
    # (an empty table: a box, as a run's resolved config.toml writes it)
    if isinstance(data.get("domain"), dict) and data["domain"].get("shape", {}) != {}:
        data["domain"] = domain_from_shape(data["domain"], base_dir)
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for key in data:
        if key not in sections:
            raise _unknown("", key, Config)
    for req in sorted(REQUIRED):
        sec, key = req.split(".")
        if key not in data.get(sec, {}):
            raise ConfigError(f"missing required field {req!r} in the case file")
    kwargs = {}
    for name, f in sections.items():
        if name not in data:
            continue
        if name == "boundary":
            kwargs[name] = boundary_tables(data["boundary"])
        elif name == "data":
            kwargs[name] = data_tables(data["data"], base_dir)
        elif name == "stages":
            stages = data["stages"]
            if not isinstance(stages, list) or not stages:
                raise ConfigError("field 'stages' must be a non-empty array of tables "
                                  "([[stages]] blocks)")
            kwargs[name] = [build_section(StageSection, s, f"stages[{i}].") for i, s in enumerate(stages)]
        else:
            kwargs[name] = build_section(f.default_factory().__class__, data[name], name + ".")
    cfg = Config(**kwargs)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks that need more than one field; raises :class:`ConfigError`."""
    name = cfg.case.name
    # The name is the default run directory runs/<name>: it must name one directory.
    if not name.strip() or name in (".", "..") or "/" in name or "\0" in name:
        raise ConfigError(f"field 'case.name' = {name!r} must be a non-empty name without "
                          f"'/' (it names the run directory runs/<name>)")
    d = cfg.domain
    if not 1 <= len(d.lower) <= 3 or len(d.lower) != len(d.upper):
        raise ConfigError(f"fields 'domain.lower' and 'domain.upper' must be lists of the same "
                          f"length 1 to 3 (space dimensions), got {d.lower!r} and {d.upper!r}")
    for i, (lo, hi) in enumerate(zip(d.lower, d.upper)):
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and hi > lo):
            raise ConfigError(f"field 'domain.upper[{i}]' = {hi!r} must be a number greater "
                              f"than 'domain.lower[{i}]' = {lo!r}")
    if d.time is not None and (len(d.time) != 2 or not d.time[1] > d.time[0]):
        raise ConfigError(f"field 'domain.time' = {d.time!r} must be [t0, t1] with t1 > t0")
    for name in d.periodic:
        if name not in cfg.axis_names[: cfg.space_dim]:
            raise ConfigError(f"field 'domain.periodic' names {name!r}; allowed space axes: "
                              f"{', '.join(cfg.axis_names[: cfg.space_dim])}")
    grid = cfg.decomposition.grid
    if len(grid) != len(cfg.axis_names):
        raise ConfigError(f"field 'decomposition.grid' = {grid!r} needs one entry per axis "
                          f"({', '.join(cfg.axis_names)})")
    if any(not isinstance(g, int) or isinstance(g, bool) or g < 1 for g in grid):
        raise ConfigError(f"field 'decomposition.grid' = {grid!r}: every entry must be a "
                          f"positive integer")
    check_cuts(cfg)
    for path, table in (("pde.params", cfg.pde.params), ("pde.inverse", cfg.pde.inverse),
                        ("interface.weights", cfg.interface.weights)):
        for k, v in table.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"field '{path}.{k}' = {v!r} must be a number")
    for path, value, low in _minimums(cfg):
        if value < low:
            raise ConfigError(f"field {path!r} = {value!r} must be >= {low}")
    choices = _registry_choices()
    for path in ("case.dtype", "network.activation", "network.derivatives",
                 "network.periodic_modes", "parallel.backend"):
        section, key = path.split(".")
        check_choice(path, getattr(getattr(cfg, section), key), choices[path])
    validate_stages(cfg, choices["case.dtype"], choices["points.resample"])  # after case.dtype
    check_choice("parallel.device", cfg.parallel.device, DEVICES)
    check_choice("parallel.wait", cfg.parallel.wait, WAITS)
    for path in ("points.resample", "points.sampling"):
        check_choice(path, getattr(cfg.points, path.split(".")[1]), choices[path])
    r3 = "r3" in resamplers_named(cfg)  # by points.resample or a stage's resample
    if r3 and cfg.points.resample_every < 1:
        raise ConfigError(f"field 'points.resample_every' = {cfg.points.resample_every!r} "
                          f"must be >= 1 with R3 resampling (steps between updates)")
    _validate_causal(cfg)
    if r3 and cfg.parallel.replicas > 1:
        raise ConfigError("R3 resampling ('r3') adapts the points of each subdomain "
                          "as a whole and cannot be split over parallel.replicas = "
                          f"{cfg.parallel.replicas}; use replicas = 1 or resample = 'uniform'")
    replicas = cfg.parallel.replicas
    for k in ("interior", "boundary", "interface", "data"):
        n = getattr(cfg.points, k)
        if replicas > 1 and 0 < n < replicas:
            raise ConfigError(f"field 'points.{k}' = {n} must be >= parallel.replicas = "
                              f"{replicas}: every replica takes a share of the points")
    if cfg.output.grid and len(cfg.output.grid) != len(cfg.axis_names):
        raise ConfigError(f"field 'output.grid' = {cfg.output.grid!r} needs one entry per axis "
                          f"({', '.join(cfg.axis_names)})")
    from ddpinn.io import vtk as vtk_output

    if cfg.output.vtk and not vtk_output.vtk_available():
        raise ConfigError("field 'output.vtk' = true needs the vtk package: "
                          "pip install 'ddpinn[vtk]'")
    from ddpinn.quantities_of_interest.spec import parse_quantities

    parse_quantities(cfg.output)  # the problem checks tags, probes and the PDE's outputs
    # Names of PDEs and conditions are checked against their registries by the caller
    # (``ddpinn.problem.build``), which knows what is installed.


def _registry_choices() -> dict:
    """Allowed values of the fields whose choices are registries: {field path: names}."""
    from ddpinn.nn.encoding import PERIODIC_MODES
    from ddpinn.nn.experts import ACTIVATIONS
    from ddpinn.nn.taylor import ENGINES
    from ddpinn.parallel.backends import BACKENDS
    from ddpinn.geometry.sampling import UNIT_SAMPLERS
    from ddpinn.training.resampling import RESAMPLERS
    from ddpinn.training.experts import DTYPES

    return {"case.dtype": list(DTYPES), "network.activation": list(ACTIVATIONS),
            "network.derivatives": list(ENGINES), "network.periodic_modes": list(PERIODIC_MODES),
            "parallel.backend": [*BACKENDS, "auto"],
            "points.resample": list(RESAMPLERS), "points.sampling": list(UNIT_SAMPLERS)}


def _validate_causal(cfg: Config) -> None:
    """Causal weights need a time axis; epsilon becomes a non-empty list of numbers >= 0."""
    c = cfg.causal
    if cfg.network.hard_initial and not cfg.has_time:
        raise ConfigError("field 'network.hard_initial' = true needs a time axis: set field "
                          "'domain.time' or leave network.hard_initial = false")
    if c.chunks and not cfg.has_time:
        raise ConfigError(f"field 'causal.chunks' = {c.chunks!r} needs a time axis: set field "
                          f"'domain.time' or leave causal.chunks = 0")
    eps = c.epsilon if isinstance(c.epsilon, list) else [c.epsilon]
    if not eps or any(isinstance(e, bool) or not isinstance(e, (int, float)) or not e >= 0
                      for e in eps):
        raise ConfigError(f"field 'causal.epsilon' = {c.epsilon!r} must be a number >= 0 or a "
                          f"non-empty list of numbers >= 0 (a schedule)")
    c.epsilon = [float(e) for e in eps]
    if not 0 < c.threshold <= 1:
        raise ConfigError(f"field 'causal.threshold' = {c.threshold!r} must be in (0, 1]")


def _minimums(cfg: Config):
    """(field, value, lowest allowed) for every integer or weight with a lower bound."""
    out = [(f"network.{k}", getattr(cfg.network, k), low)
           for k, low in (("width", 1), ("depth", 1), ("fourier_features", 0),
                          ("periodic_harmonics", 1))]
    out += [(f"points.{k}", getattr(cfg.points, k), low)
            for k, low in (("interior", 1), ("boundary", 1), ("interface", 1), ("data", 0),
                           ("resample_every", 0))]
    out += [("causal.chunks", cfg.causal.chunks, 0)]
    out += [(f"loss.{k}", getattr(cfg.loss, k), 0.0) for k in ("boundary", "data")]
    res = cfg.loss.residual
    items = res.items() if isinstance(res, dict) else \
        enumerate(res) if isinstance(res, list) else [(None, res)]
    for k, v in items:
        path = "loss.residual" if k is None else \
            f"loss.residual.{k}" if isinstance(res, dict) else f"loss.residual[{k}]"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"field {path!r} = {v!r} must be a number, a list of numbers "
                              f"(one per equation) or a table {{equation = number}}")
        out.append((path, v, 0.0))
    if isinstance(res, (list, dict)) and not res:
        raise ConfigError(f"field 'loss.residual' = {res!r} is empty: give a number, one "
                          f"weight per equation, or {{equation = weight}}")
    out += [(f"interface.weights.{k}", v, 0.0) for k, v in cfg.interface.weights.items()]
    out += [(f"output.{k}", getattr(cfg.output, k), 0)
            for k in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints")]
    out += [(f"output.grid[{i}]", n, 2) for i, n in enumerate(cfg.output.grid)]
    out += [("output.reference_n", cfg.output.reference_n, 0)]
    out += [("parallel.threads", cfg.parallel.threads, 0),
            ("parallel.replicas", cfg.parallel.replicas, 1)]
    return out


# A value that starts like a TOML string, array or table must be one: a bare word is a
# string, but a cut-off quote or bracket is a mistake, not part of a name.
_STRUCTURED = ('"', "'", "[", "{")


def _parse_value(key: str, text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if text.startswith(_STRUCTURED) or text.endswith(('"', "'", "]", "}")):
            raise ConfigError(f"override {key!r}: {text!r} is not a valid TOML value "
                              f"({exc}); quote strings whole, e.g. {key}='\"runs/a\"'") from None
        return text  # a bare word is a string


def apply_overrides(data: dict, overrides) -> dict:
    """Apply ``key.sub=value`` overrides (TOML values; bare words are strings).

    ``stages.1.steps=10`` addresses the second stage.
    """
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if isinstance(node, list):
                try:
                    node = node[int(p)]
                except (ValueError, IndexError):
                    raise ConfigError(f"override {key!r}: no list entry {p!r}") from None
            else:
                node = node.setdefault(p, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override {key!r}: {p!r} is a value, not a table")
        last = parts[-1]
        if isinstance(node, list):
            raise ConfigError(f"override {key!r} must name a field inside the list entry")
        node[last] = _parse_value(key.strip(), text.strip())
    return data


def load(path, overrides=None) -> Config:
    """Read a case file, apply ``--set`` overrides, validate."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read case file {str(path)!r}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"case file {str(path)!r} is not valid TOML: {exc}") from None
    data = apply_overrides(data, overrides)
    data["_base_dir"] = str(path.parent)  # STL and data files may be named relative to it
    if not data.get("output", {}).get("dir"):
        data.setdefault("output", {})["dir"] = str(Path("runs") / data.get("case", {}).get(
            "name", path.stem))
    return from_dict(data)

"""Optimizers as a registry of small adapters (``stages.optimizer``).

The trainer knows one interface, :class:`OptimizerAdapter`; every optimizer-specific
decision (how often a step evaluates the loss, when the step's metrics are recorded, what
goes into a checkpoint, what a new objective means) lives in its adapter. ``"adam"`` and
``"lbfgs"`` are registered here; a case names another one by its registered name or as
``"package.module:ClassName"`` (imported, like a PDE plugin; importing the module also runs
its ``@register_optimizer``).

Checkpoint keys: an adapter returns three dicts from :meth:`OptimizerAdapter.state`. The
*distributed* one holds per-expert tensors (expert on axis 0, saved by sid and re-split on
any rank count), the *shared* one replicated tensors, *scalars* JSON-able numbers and lists.
Prefix every key with the optimizer's name (``adam/exp_avg/<param>``, ``lbfgs/s/<i>/<param>``)
so that stages and plugins never collide.
"""
from __future__ import annotations

import importlib

import torch

from ddpinn.training.lbfgs import DistributedLBFGS

OPTIMIZERS: dict = {}
#: Shipped optimizers in modules of their own: name -> the module that registers it, imported
#: on first use (the module imports this one, so this one never imports it statically).
OPTIMIZER_MODULES = {"gauss_newton": "ddpinn.training.gauss_newton",
                     "ssbfgs": "ddpinn.training.self_scaled",
                     "ssbroyden": "ddpinn.training.self_scaled"}


def register_optimizer(name: str):
    """Class decorator: make an :class:`OptimizerAdapter` subclass ``stages.optimizer = name``."""
    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, OptimizerAdapter)):
            raise TypeError(f"optimizer {name!r}: {cls!r} is not an OptimizerAdapter subclass")
        cls.name = name
        OPTIMIZERS[name] = cls
        return cls
    return deco


def get_optimizer_class(name: str):
    """The adapter class of ``name``: a registered name or ``"package.module:ClassName"``.

    Raises ValueError with the allowed choices."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"optimizer {name!r} cannot be imported: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, OptimizerAdapter)):
            raise ValueError(f"optimizer {name!r} is not a "
                             f"ddpinn.training.optimizers.OptimizerAdapter subclass")
        return cls
    if name not in OPTIMIZERS and name in OPTIMIZER_MODULES:
        importlib.import_module(OPTIMIZER_MODULES[name])
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is not known")
    return OPTIMIZERS[name]


def optimizer_names() -> list:
    """Names a case may give: the registered ones and those of :data:`OPTIMIZER_MODULES`."""
    return list(dict.fromkeys([*OPTIMIZERS, *OPTIMIZER_MODULES]))


def build_optimizer(solver, stage, lr: float) -> "OptimizerAdapter":
    """The adapter of ``stage.optimizer`` over ``solver``'s parameters, step size ``lr``."""
    return get_optimizer_class(stage.optimizer)(solver, stage, lr)


class OptimizerAdapter:
    """One optimizer, as the trainer sees it. Subclass, then ``@register_optimizer("name")``.

    Parameters
    ----------
    solver : Solver
        ``solver.model`` holds the experts' parameters (expert on axis 0, this rank's experts
        only), ``solver.shared`` the replicated ones (their gradients are already summed over
        ranks when ``closure`` returns). ``solver.layout.peer_comm`` reduces over one replica
        of every expert group, for global inner products.
    stage : StageSection
        The stage's settings (``stage.lr``, ``stage.history``, ...).
    lr : float
        The stage's ``lr`` times the back-off after divergence rollbacks.

    Class attributes: ``default_lr`` (``stages.lr`` when the case gives none); ``name`` is set
    by :func:`register_optimizer`.
    """

    name = ""
    default_lr = 1e-3

    def __init__(self, solver, stage, lr: float):
        self.solver, self.stage, self.lr = solver, stage, lr

    def step(self, closure, record):
        """Collective. One optimizer step; returns the step's ``(loss, metrics)``.

        ``closure()`` zeroes the gradients, evaluates the global loss at the current
        parameters, backpropagates and returns ``(loss: float, metrics: dict)``; it is
        collective, so every rank must call it equally often. ``record(loss, metrics)`` must be
        called exactly once, with the loss the step is logged under (it raises on a NaN
        loss, which triggers a rollback)."""
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """Before every step: ``stage.lr`` times the schedule's factor and the back-off."""
        self.lr = lr

    def state(self, named_dist: dict, named_shared: dict):
        """``(dist, shared, scalars)`` for the checkpoint (see the module docstring).

        ``named_dist`` {name: Parameter (E, ...)} and ``named_shared`` {name: Parameter}."""
        return {}, {}, {}

    def load_state(self, dist: dict, shared: dict, scalars: dict, named_dist: dict,
                   named_shared: dict) -> None:
        """Restore what :meth:`state` wrote. ``dist`` holds this rank's experts' rows (on
        any rank count); keys may be missing (a checkpoint of another optimizer, or from
        before the stage began): start fresh then."""

    def objective_changed(self) -> None:
        """The loss function changed (new points, new causal weights): drop anything that
        holds values of the old one."""

    @classmethod
    def memory_bytes(cls, stage, params: float, largest_param: float) -> float:
        """Bytes held besides the parameters and their gradients (for the memory check).

        ``params``: bytes of this rank's parameters; ``largest_param``: of its largest
        tensor. An adapter whose ``memory_bytes`` also takes ``rows`` is given the residual
        rows of all local experts (E times the rows per expert), for Jacobians, one that
        takes ``experts`` the number E of local experts."""
        return float(params)

    @classmethod
    def check_case(cls, stage, conditions, cfg, where: str) -> None:
        """At set-up, before anything is written: raise ValueError (naming ``where``, the
        stage's field path) if this optimizer cannot run ``stage`` with ``conditions``
        (its ConditionSet) in the case ``cfg``."""


@register_optimizer("adam")
class Adam(OptimizerAdapter):
    """``torch.optim.Adam``. The step's metrics are recorded at the loss before the update."""

    default_lr = 1e-3

    def __init__(self, solver, stage, lr):
        super().__init__(solver, stage, lr)
        self.opt = torch.optim.Adam(solver.parameters(), lr=lr)

    def step(self, closure, record):
        loss, metrics = closure()
        record(loss, metrics)
        self.opt.step()
        return loss, metrics

    def set_lr(self, lr):
        self.lr = lr
        for g in self.opt.param_groups:
            g["lr"] = lr

    def state(self, named_dist, named_shared):
        dist, shared = {}, {}
        for group, named in ((dist, named_dist), (shared, named_shared)):
            for n, p in named.items():
                st = self.opt.state.get(p)
                if st:
                    group[f"adam/exp_avg/{n}"] = st["exp_avg"]
                    group[f"adam/exp_avg_sq/{n}"] = st["exp_avg_sq"]
                    shared["adam/step"] = st["step"].detach().clone()
        return dist, shared, {}

    def load_state(self, dist, shared, scalars, named_dist, named_shared):
        if "adam/step" not in shared:
            return
        for group, named in ((dist, named_dist), (shared, named_shared)):
            for n, p in named.items():
                if f"adam/exp_avg/{n}" in group:
                    self.opt.state[p] = {"step": shared["adam/step"].clone(),
                                         "exp_avg": group[f"adam/exp_avg/{n}"].to(p).clone(),
                                         "exp_avg_sq": group[f"adam/exp_avg_sq/{n}"].to(p).clone()}

    @classmethod
    def memory_bytes(cls, stage, params, largest_param):
        return 2 * params  # exp_avg, exp_avg_sq


class LineSearchAdapter(OptimizerAdapter):
    """Base of the adapters whose optimizer ``self.opt`` runs a line search on the global
    loss: ``opt.step(loss_only)`` evaluates the loss many times and the step is recorded at
    the accepted point, after the update; ``opt.forget_current()`` drops the loss and
    gradient of the last line search. The step length stays the one the stage began with
    (``lr`` times the back-off); schedules do not apply."""

    default_lr = 1.0

    def step(self, closure, record):
        box = {}

        def loss_only():
            box["loss"], box["metrics"] = closure()
            return box["loss"]

        self.opt.step(loss_only)
        record(box["loss"], box["metrics"])
        return box["loss"], box["metrics"]

    def set_lr(self, lr):
        """No-op: the step length stays the one the stage began with."""

    def objective_changed(self):
        # The last line search's loss and gradient belong to the old objective (dropping
        # them is also what makes restarts identical).
        self.opt.forget_current()


@register_optimizer("lbfgs")
class LBFGS(LineSearchAdapter):
    """:class:`~ddpinn.training.lbfgs.DistributedLBFGS`: many loss evaluations per step (the
    line search); the step is recorded at the accepted point, after the update. Its step
    length is the stage's ``lr`` times the back-off; schedules do not apply (the history
    scales the direction)."""

    default_lr = 1.0

    def __init__(self, solver, stage, lr):
        super().__init__(solver, stage, lr)
        # Inner products over one replica of every group (peer_comm): replicas hold identical
        # parameters and gradients, so each expert counts once and all replicas agree.
        self.opt = DistributedLBFGS(list(solver.model.parameters()),
                                    list(solver.shared.parameters()), solver.layout.peer_comm,
                                    solver.decomposition.n_subdomains, lr=lr,
                                    history=stage.history, max_evals=stage.max_evals)


    def state(self, named_dist, named_shared):
        dist, shared = {}, {}
        names = list(named_dist) + list(named_shared)
        nd = len(named_dist)
        for i, (sv, yv) in enumerate(zip(self.opt.s, self.opt.y)):
            for j, n in enumerate(names):
                target = dist if j < nd else shared
                target[f"lbfgs/s/{i}/{n}"] = sv[j]
                target[f"lbfgs/y/{i}/{n}"] = yv[j]
        scalars = {"lbfgs_rho": list(self.opt.rho), "lbfgs_n_iter": self.opt.n_iter,
                   "lbfgs_len": len(self.opt.s)}
        return dist, shared, scalars

    def load_state(self, dist, shared, scalars, named_dist, named_shared):
        if "lbfgs_len" not in scalars:
            return
        names = list(named_dist) + list(named_shared)
        nd = len(named_dist)

        def vec(kind, i):
            return [(dist if j < nd else shared)[f"lbfgs/{kind}/{i}/{n}"].clone()
                    for j, n in enumerate(names)]

        n = scalars["lbfgs_len"]
        self.opt.load_state({"s": [vec("s", i) for i in range(n)],
                             "y": [vec("y", i) for i in range(n)],
                             "rho": scalars["lbfgs_rho"], "n_iter": scalars["lbfgs_n_iter"]})

    @classmethod
    def memory_bytes(cls, stage, params, largest_param):
        # min(steps, history) (s, y) pairs; the current and new gradients, the start point,
        # the direction and the last gradient; and the float64 stacks of the basis (2k + 4
        # vectors) taken per parameter tensor for the Gram matrix.
        k = min(stage.steps, stage.history)
        return (2 * k + 5) * params + (2 * k + 7) * largest_param * 2

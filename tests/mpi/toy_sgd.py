"""SGD with momentum as an optimizer plugin from outside the package.

Importing this module registers it as ``"sgd"``; a case names it
``stages.optimizer = "tests.mpi.toy_sgd:SGD"`` (imported when the case is validated). Its
momentum buffers go into checkpoints through ``state`` / ``load_state``.
"""
from __future__ import annotations

import torch

from ddpinn.training.optimizers import OptimizerAdapter, register_optimizer


@register_optimizer("sgd")
class SGD(OptimizerAdapter):
    """p <- p - lr * b with b <- momentum * b + grad (b = grad at the first step)."""

    default_lr = 1e-2
    momentum = 0.9

    def __init__(self, solver, stage, lr):
        super().__init__(solver, stage, lr)
        self.params = solver.parameters()
        self.buffers = {}  # Parameter -> momentum buffer, same shape

    def step(self, closure, record):
        loss, metrics = closure()
        record(loss, metrics)  # the step is logged at the loss before the update
        with torch.no_grad():
            for p in self.params:
                if p.grad is None:
                    continue
                b = self.buffers.get(p)
                b = p.grad.clone() if b is None else b.mul_(self.momentum).add_(p.grad)
                self.buffers[p] = b
                p.add_(b, alpha=-self.lr)
        return loss, metrics

    def state(self, named_dist, named_shared):
        dist, shared = {}, {}
        for group, named in ((dist, named_dist), (shared, named_shared)):
            for n, p in named.items():
                if p in self.buffers:
                    group[f"sgd/momentum/{n}"] = self.buffers[p]
        return dist, shared, {"sgd_momentum": self.momentum}

    def load_state(self, dist, shared, scalars, named_dist, named_shared):
        for group, named in ((dist, named_dist), (shared, named_shared)):
            for n, p in named.items():
                b = group.get(f"sgd/momentum/{n}")
                if b is not None:
                    self.buffers[p] = b.to(p).clone()

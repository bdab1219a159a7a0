"""The Taylor-mode forward sweep as one ``torch.compile``-d graph (``network.compile``).

A :class:`TaylorSweep` computes the values, the whole Jacobian and a set of second-order
channels at once; the compiler fuses the element-wise chain-rule products of every layer
(forward and backward) into a few loops, where the eager engine
(:class:`~ddpinn.nn.taylor_engine.TaylorFields`) runs one kernel per product. The channels are
learned: the first fields of a sweep run eagerly and record the channels asked for, so the
first compilation already has them; a channel first asked for later is computed eagerly that
once and is part of every later sweep (one recompilation). Every compilation is logged
(``compiling the Taylor sweep ...``, then ``compiled the Taylor sweep in ... s``).

The graph allows one backward pass (the training step's), not a second one: a loss that
contains ``grad_of`` needs the eager engine.
"""
from __future__ import annotations

import logging
import time
import weakref

import torch

from ddpinn.nn.taylor_engine import SWEEPS, TaylorFields

log = logging.getLogger("ddpinn")


class TaylorSweep:
    """The compiled Taylor-mode sweep of one model, for one set of axis and output names."""

    _by_model = weakref.WeakKeyDictionary()  # model -> {(axes, outputs): TaylorSweep}

    def __init__(self, axes, outputs):
        self.axes, self.outputs = tuple(axes), tuple(outputs)
        self.keys: list = []     # second-order channels every sweep computes
        self.recorded = False    # keys recorded by a first, eager evaluation
        self._compiled = torch.compile(_sweep, dynamic=False)
        self._seen: set = set()  # (shape, dtype, keys) already compiled for

    @classmethod
    def of(cls, model, axes, outputs) -> "TaylorSweep":
        """The sweep kept for ``model`` and these axis and output names."""
        sweeps = cls._by_model.setdefault(model, {})
        key = (tuple(axes), tuple(outputs))
        if key not in sweeps:
            sweeps[key] = cls(axes, outputs)
        return sweeps[key]

    def fields(self, model, x) -> TaylorFields:
        """Fields of ``model`` at x (E, N, d): the first ones eager (they record the channels
        asked for), then :class:`CompiledTaylorFields`."""
        if not self.recorded:
            self.recorded = True
            return TaylorFields(model, x, self.axes, self.outputs, record=self.keys)
        return CompiledTaylorFields(model, x, self.axes, self.outputs, self)

    def __call__(self, model, x):
        """Values (E, N, m), Jacobian (E, N, d, m) and the channels ``keys`` (E, N, K, m) or
        None, at x (E, N, d)."""
        keys = tuple(self.keys)
        variant = (tuple(x.shape), x.dtype, keys)
        new = variant not in self._seen
        if new:  # a new shape or channel set compiles (seconds): say so, the run is not stuck
            log.info("compiling the Taylor sweep for %d x %d points (second-order channels: "
                     "%d)", x.shape[0], x.shape[1], len(keys))
            t0 = time.perf_counter()
        out = self._compiled(model, x, self.axes, self.outputs, keys)
        if new:
            self._seen.add(variant)
            log.info("compiled the Taylor sweep in %.1f s", time.perf_counter() - t0)
        return out


def _sweep(model, x, axes, outputs, keys):
    """What a sweep computes (the function ``torch.compile`` traces)."""
    fields = TaylorFields(model, x, axes, outputs)
    second = None
    if keys:
        second = torch.stack([torch.stack(v, dim=-1) for v in fields._channels(list(keys))], 2)
    return fields.u, fields._jacobian(), second


class CompiledTaylorFields(TaylorFields):
    """:class:`TaylorFields` whose values, Jacobian and known channels come from one call
    of a :class:`TaylorSweep`; channels the sweep lacks are computed eagerly (and join the
    sweep from then on). One backward pass only: :meth:`grad_of` raises."""

    def __init__(self, model, x, axes, outputs, sweep: TaylorSweep):
        super().__init__(model, x, axes, outputs)
        self._sweep = sweep
        self._eager = None  # eager fields for channels outside the sweep

    @property
    def u(self) -> torch.Tensor:
        """The experts' outputs (E, N, m): the eager engine's values to rounding."""
        if self._u is None:
            self._run_sweep()
        return self._u

    def _jacobian(self) -> torch.Tensor:
        if self._jac is None:
            self._run_sweep()
        return self._jac

    def _run_sweep(self) -> None:
        u, jac, second = self._sweep(self.model, self.x)
        self._u, self._jac = u, jac
        if second is not None:
            for key, part in zip(self._sweep.keys, second.unbind(2)):
                self._second[key] = part.unbind(-1)

    def _channels(self, keys) -> list:
        """Channels from the sweep; those it lacks from eager fields (and from the sweep
        next time)."""
        self._jacobian()  # runs the sweep
        missing = list(dict.fromkeys(k for k in keys if k not in self._second))
        if missing:
            if self._eager is None:
                self._eager = TaylorFields(self.model, self.x, tuple(self.axes),
                                           tuple(self.outputs))
            for key, value in zip(missing, self._eager._channels(missing)):
                self._second[key] = value
            self._sweep.keys.extend(missing)
        return [self._second[k] for k in keys]

    def grad_of(self, y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("TaylorFields.grad_of needs the eager engine: a loss with it "
                           "is differentiated twice, which a compiled sweep cannot be")


SWEEPS["compiled"] = TaylorSweep

"""The derivative engines, by their public names (``network.derivatives``).

:func:`make_fields` (in :mod:`ddpinn.nn.taylor_engine`, where the step calls it) gives the
outputs and derivatives of the experts at points: Taylor mode (eager:
:mod:`ddpinn.nn.taylor_engine`; compiled: :mod:`ddpinn.nn.taylor_compiled`) where the model
says it supports it (its ``supports_taylor()``), autograd :class:`~ddpinn.nn.derivatives.Fields`
for anything else or when asked for ``"autograd"``. A new architecture needs no change here:
it answers ``supports_taylor()`` itself (:class:`~ddpinn.nn.experts.BatchedExperts`).
Importing this module also registers the compiled sweep (``network.compile``).
"""
from __future__ import annotations

from ddpinn.nn.activations import ACTIVATION_DERIVATIVES
from ddpinn.nn.taylor_compiled import CompiledTaylorFields, TaylorSweep
from ddpinn.nn.taylor_engine import ENGINES, TaylorFields, make_fields, supports_taylor

__all__ = ["ENGINES", "ACTIVATION_DERIVATIVES", "CompiledTaylorFields", "TaylorFields",
           "TaylorSweep", "make_fields", "supports_taylor"]

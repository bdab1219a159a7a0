"""The derivative engines and their choice (``network.derivatives``).

:func:`make_fields` gives the outputs and derivatives of the experts at points: Taylor mode
(:mod:`ddpinn.nn.taylor_engine`; compiled: :mod:`ddpinn.nn.taylor_compiled`) where the model
says it supports it (its ``supports_taylor()``), autograd :class:`~ddpinn.nn.derivatives.Fields`
for anything else or when asked for ``"autograd"``. A new architecture needs no change here:
it answers ``supports_taylor()`` itself (:class:`~ddpinn.nn.experts.BatchedExperts`).

The public names of the engine modules are importable from here too.
"""
from __future__ import annotations

import torch
from torch import nn

from ddpinn.nn.activations import ACTIVATION_DERIVATIVES
from ddpinn.nn.constraints import ConstrainedFields
from ddpinn.nn.derivatives import Fields
from ddpinn.nn.taylor_compiled import CompiledTaylorFields, TaylorSweep
from ddpinn.nn.taylor_engine import TaylorFields

__all__ = ["ENGINES", "ACTIVATION_DERIVATIVES", "CompiledTaylorFields", "TaylorFields",
           "TaylorSweep", "make_fields", "supports_taylor"]

#: Derivative engines a case can choose (``network.derivatives``).
ENGINES = ("taylor", "autograd")


def supports_taylor(model) -> bool:
    """Whether ``model`` says the Taylor-mode engine can differentiate it."""
    answer = getattr(model, "supports_taylor", None)
    return bool(answer()) if callable(answer) else False


def make_fields(model: nn.Module, x: torch.Tensor, axes, outputs, engine: str = "taylor",
                compile: bool = False, constant_data: bool = False):
    """Outputs and derivatives of ``model`` at ``x`` (E, N, d) with the chosen engine.

    ``"taylor"`` gives :class:`TaylorFields` where the model supports it and autograd
    :class:`Fields` otherwise; ``"autograd"`` always gives :class:`Fields`. ``x`` should
    require grad (autograd engine: always; Taylor engine: for ``grad_of``). With ``compile``
    the Taylor engine runs as one compiled sweep (:class:`TaylorSweep`, kept per model);
    its results allow one backward pass, not two (no ``grad_of`` in the loss). With
    ``constant_data`` a hard initial condition's data and its derivatives are kept per point
    set as constants (:class:`~ddpinn.nn.constraints.ConstrainedFields`; not with
    ``grad_of``).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown derivative engine {engine!r}; choose one of: "
                         f"{', '.join(ENGINES)}")
    if engine == "taylor" and supports_taylor(model):
        if compile:
            fields = TaylorSweep.of(model, axes, outputs).fields(model, x)
        else:
            fields = TaylorFields(model, x, axes, outputs)
        transform = getattr(model, "output_transform", None)
        return fields if transform is None else \
            ConstrainedFields(fields, transform, x, constant_data=constant_data)
    return Fields(x, model(x), axes, outputs)

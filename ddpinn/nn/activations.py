"""Activation functions of the experts, and their first and second derivatives.

``ACTIVATIONS`` is the registry behind ``network.activation``; ``ACTIVATION_DERIVATIVES``
holds ``act'`` and ``act''`` of those the Taylor-mode engine can differentiate
(:mod:`ddpinn.nn.taylor_engine`), written as functions of the pre-activation ``z`` and of
the values already computed (``act(z)``, ``act'(z)``) so that nothing is evaluated twice.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "sin": torch.sin,
               "gelu": nn.functional.gelu, "silu": nn.functional.silu}

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# -- act'(z) from (z, h = act(z)); act''(z) from (z, h, act'(z)) -------------------------------
def _tanh_1(z, h):
    return 1 - h * h


def _tanh_2(z, h, a1):
    return -2 * h * a1


def _sin_1(z, h):
    return torch.cos(z)


def _sin_2(z, h, a1):
    return -h


def _silu_1(z, h):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _silu_2(z, h, a1):
    s = torch.sigmoid(z)
    return s * (1 - s) * (2 + z * (1 - 2 * s))


def _gelu_1(z, h):
    # gelu(z) = z Phi(z) (exact, erf form): gelu' = Phi + z phi
    cdf = 0.5 * (1 + torch.erf(z * _INV_SQRT_2))
    return cdf + z * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def _gelu_2(z, h, a1):
    # gelu'' = phi (2 - z^2)
    return torch.exp(-0.5 * z * z) * _INV_SQRT_2PI * (2 - z * z)


#: activation name -> (act', act'') as functions of (z, act(z)[, act'(z)])
ACTIVATION_DERIVATIVES = {"tanh": (_tanh_1, _tanh_2), "sin": (_sin_1, _sin_2),
                          "silu": (_silu_1, _silu_2), "gelu": (_gelu_1, _gelu_2)}


def differentiable_activation(fn) -> str | None:
    """The registered name of activation function ``fn`` when its derivatives are known."""
    for name, act in ACTIVATIONS.items():
        if fn is act and name in ACTIVATION_DERIVATIVES:
            return name
    return None

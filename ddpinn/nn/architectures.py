"""Network architectures as a registry (``network.architecture``).

An architecture is a builder: a callable that takes an :class:`ExpertSpec` (what the case
asks of the experts of some subdomains) and returns a
:class:`~ddpinn.nn.experts.BatchedExperts` holding those experts, batched along axis 0.
``"mlp"`` (:class:`~ddpinn.nn.experts.BatchedMLP`) is registered here; a case names another
one by its registered name or as ``"package.module:Name"`` (imported, like a PDE plugin;
importing the module also runs its ``@register_architecture``).

The derivative engine follows from the model, not from the name: the Taylor-mode engine
where the model's ``supports_taylor()`` is true, autograd otherwise
(:func:`ddpinn.nn.taylor.make_fields`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch

from ddpinn.nn.experts import BatchedExperts, BatchedMLP

ARCHITECTURES: dict = {}


@dataclass(frozen=True)
class ExpertSpec:
    """What the case asks of the experts of subdomains ``sids``.

    Parameters
    ----------
    sids : tuple of int, length E, the experts' subdomain ids (batch order)
    lower, upper : tuple of tuples, shape (E, dim), the boxes of their subdomains
    out_dim : int, number of outputs (the PDE's)
    periods : tuple, length dim, the period of each periodic axis (None elsewhere)
    network : the case's ``[network]`` section (width, depth, activation, ...)
    seed : int, the case's seed (draw expert e's weights from
        ``expert_generator(seed, sids[e])``: the same on any rank count)
    dtype : torch.dtype
    """

    sids: tuple
    lower: tuple
    upper: tuple
    out_dim: int
    periods: tuple
    network: Any
    seed: int
    dtype: torch.dtype = torch.float64


def register_architecture(name: str):
    """Decorator: make a builder (``ExpertSpec -> BatchedExperts``; a function, or a
    BatchedExperts subclass constructed from the spec) ``network.architecture = name``."""
    def deco(builder):
        if not callable(builder):
            raise TypeError(f"architecture {name!r}: {builder!r} is not callable")
        ARCHITECTURES[name] = builder
        return builder
    return deco


def get_architecture(name: str):
    """The builder of ``name``: a registered name or ``"package.module:Name"``.

    Raises ValueError naming the field and the choices."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            builder = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"field 'network.architecture' = {name!r} cannot be imported: "
                             f"{exc}") from None
        if not callable(builder):
            raise ValueError(f"field 'network.architecture' = {name!r} is not callable (an "
                             f"architecture builder: ExpertSpec -> BatchedExperts)")
        return builder
    if name not in ARCHITECTURES:
        raise ValueError(f"field 'network.architecture' = {name!r} is not allowed; choose one "
                         f"of: {', '.join(ARCHITECTURES)}, or 'package.module:Name'")
    return ARCHITECTURES[name]


def build_architecture(name: str, spec: ExpertSpec) -> BatchedExperts:
    """The experts of ``spec`` built by architecture ``name``."""
    model = get_architecture(name)(spec)
    if not isinstance(model, BatchedExperts):
        raise TypeError(f"architecture {name!r} built a {type(model).__name__}, not a "
                        f"ddpinn.nn.experts.BatchedExperts")
    return model


@register_architecture("mlp")
def mlp(spec: ExpertSpec) -> BatchedMLP:
    """Stacked MLPs with per-subdomain input normalisation, periodic and Fourier features."""
    net = spec.network
    return BatchedMLP(
        spec.sids, spec.lower, spec.upper, spec.out_dim, width=net.width, depth=net.depth,
        activation=net.activation, periods=spec.periods, harmonics=net.periodic_harmonics,
        fourier_features=net.fourier_features, fourier_scale=net.fourier_scale,
        seed=spec.seed, dtype=spec.dtype, periodic_modes=net.periodic_modes)

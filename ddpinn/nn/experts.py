"""Batched experts: every expert a rank owns, evaluated as one network with stacked weights.

Expert ``e`` maps points of its own subdomain, shape (N, dim), to outputs, shape (N, m).
The stack evaluates all of them at once: input (E, N, dim) -> output (E, N, m) with
``baddbmm`` per layer (:mod:`ddpinn.nn.batched`), never a Python loop over experts. Weights
are initialised from sid-keyed seeds, so an expert is the same whichever rank builds it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ddpinn.nn.activations import ACTIVATIONS, differentiable_activation
from ddpinn.nn.batched import baddbmm, bmm
from ddpinn.nn.encoding import BASE_BLOCKS, PERIODIC_MODES, EncodingLayout

__all__ = ["ACTIVATIONS", "BatchedExperts", "BatchedMLP", "expert_generator"]


def expert_generator(seed: int, sid: int, stream: int = 0) -> torch.Generator:
    """Random stream of one expert: depends on (seed, sid, stream) only."""
    ss = np.random.SeedSequence([int(seed), 0x5EED, int(sid), int(stream)])
    return torch.Generator().manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> 1))


class BatchedExperts(nn.Module):
    """Base of every network architecture: E experts evaluated as one batch.

    An architecture (:mod:`ddpinn.nn.architectures`) subclasses this and implements
    :meth:`network`. Every parameter holds expert ``e``'s part at index ``e`` of axis 0:
    that is how optimizers, checkpoints (keyed by sid) and the rank-count invariance see the
    experts. Each expert's arithmetic must not depend on how many experts are batched: use
    the products of :mod:`ddpinn.nn.batched`, and draw expert ``e``'s initial weights from
    :func:`expert_generator` with its sid.

    Parameters
    ----------
    sids : list of int, length E
        Subdomain ids of the experts, in the order of the batch dimension.
    """

    #: buffers that are the same for every expert (the others hold expert e at index e)
    shared_buffers: tuple = ()

    def __init__(self, sids):
        super().__init__()
        self.sids = [int(s) for s in sids]
        self.output_transform = None  # a map of the outputs, e.g. a hard initial condition

    @property
    def n_experts(self) -> int:
        return len(self.sids)

    def supports_taylor(self) -> bool:
        """Whether the Taylor-mode engine can differentiate this model (else: autograd)."""
        return False

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The networks alone: x (E, N, dim) -> (E, N, out_dim)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (E, N, dim) -> outputs (E, N, out_dim), constrained by ``output_transform``
        when one is set (:class:`~ddpinn.nn.constraints.InitialConstraint`)."""
        h = self.network(x)
        return h if self.output_transform is None else self.output_transform.apply(x, h)

    # -- per-subdomain state (checkpoints keyed by sid) -----------------------------------
    def expert_state(self) -> dict:
        """{sid: {name: tensor}} with each expert's own slice of every parameter."""
        named = dict(self.named_parameters())
        return {sid: {n: p[e].detach().clone() for n, p in named.items()}
                for e, sid in enumerate(self.sids)}

    def load_expert_state(self, states: dict) -> None:
        """Inverse of :meth:`expert_state`; ``states`` must hold every local sid."""
        with torch.no_grad():
            for n, p in self.named_parameters():
                p.copy_(torch.stack([states[sid][n] for sid in self.sids]).to(p.dtype))


class BatchedMLP(BatchedExperts):
    """Stacked MLP experts with per-subdomain input normalisation (architecture
    ``"mlp"``).

    Parameters
    ----------
    sids : list of int, length E
        Subdomain ids of the experts, in the order of the batch dimension.
    lower, upper : array, shape (E, dim)
        Boxes of the experts' subdomains (inputs are mapped to [-1, 1] per box).
    out_dim : int
    width, depth : int
        Hidden width and number of hidden layers.
    activation : str
    periods : list of float or None, length dim
        Period of each periodic axis (None elsewhere). Periodic axes enter only through
        ``cos(x_per @ W), sin(x_per @ W)`` with wavevectors ``W[p, m] = 2 pi k_mp / L_p``,
        so experts are exactly periodic there.
    harmonics : int
        Largest integer wavenumber per periodic axis.
    periodic_modes : str
        Which integer wavevectors k (:data:`~ddpinn.nn.encoding.PERIODIC_MODES`): ``"axes"``
        (each axis alone) or ``"mixed"`` (all combinations up to ``harmonics``).
    fourier_features : int
        Number of random Fourier features (0: none), scale ``fourier_scale``.
    seed : int
    dtype : torch.dtype
    """

    shared_buffers = ("periodic_wavevectors",)  # (P, M): the same for every expert

    def __init__(self, sids, lower, upper, out_dim, width=32, depth=3, activation="tanh",
                 periods=None, harmonics=2, fourier_features=0, fourier_scale=1.0, seed=0,
                 dtype=torch.float64, periodic_modes="axes"):
        super().__init__(sids)
        lower = torch.as_tensor(np.asarray(lower, float), dtype=dtype)
        upper = torch.as_tensor(np.asarray(upper, float), dtype=dtype)
        dim = lower.shape[-1]
        periods = list(periods) if periods is not None else [None] * dim
        self.activation = ACTIVATIONS[activation]
        self.register_buffer("center", ((upper + lower) / 2)[:, None, :])
        self.register_buffer("half_width", ((upper - lower) / 2)[:, None, :])
        self.plain_axes = [a for a in range(dim) if periods[a] is None]
        self.periodic_axes = [a for a in range(dim) if periods[a] is not None]
        n_per = len(self.periodic_axes)
        k = PERIODIC_MODES[periodic_modes](n_per, harmonics) if n_per else np.zeros((0, 0))
        scale = np.array([2 * math.pi / periods[a] for a in self.periodic_axes])
        self.register_buffer("periodic_wavevectors",
                             torch.tensor((k * scale).T, dtype=dtype))  # (P, M)
        self.n_fourier = int(fourier_features)
        #: which encoding columns are which (the Taylor engine reads them from it)
        self.layout = EncodingLayout(len(self.plain_axes), k.shape[0], self.n_fourier)
        enc_dim = self.layout.base_width
        if self.n_fourier:
            b = torch.stack([torch.randn(enc_dim, self.n_fourier, dtype=torch.float64,
                                         generator=expert_generator(seed, s, 1))
                             for s in self.sids]) * fourier_scale
            self.register_buffer("fourier_b", b.to(dtype))
            enc_dim += 2 * self.n_fourier
        sizes = [enc_dim] + [width] * depth + [out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        per_expert = [self._init_expert(seed, s, sizes) for s in self.sids]
        for layer in range(len(sizes) - 1):
            self.weights.append(nn.Parameter(
                torch.stack([p[layer][0] for p in per_expert]).to(dtype)))
            self.biases.append(nn.Parameter(
                torch.stack([p[layer][1] for p in per_expert]).to(dtype)))

    @staticmethod
    def _init_expert(seed, sid, sizes):
        """Xavier-normal weights, zero biases, drawn in float64 from the sid's stream."""
        g = expert_generator(seed, sid)
        out = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            std = math.sqrt(2.0 / (fan_in + fan_out))
            out.append((torch.randn(fan_in, fan_out, dtype=torch.float64, generator=g) * std,
                        torch.zeros(1, fan_out, dtype=torch.float64)))
        return out

    def supports_taylor(self) -> bool:
        """True unless a subclass changes the forward pass or the encoding, or the
        activation has no known derivatives."""
        cls = type(self)
        return (cls.network is BatchedMLP.network and cls.encode is BatchedMLP.encode
                and cls.forward is BatchedExperts.forward
                and differentiable_activation(self.activation) is not None)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input features in the blocks of :attr:`layout`; x: (E, N, dim) -> (E, N, width)."""
        blocks = {}
        if self.plain_axes:
            z = (x - self.center) / self.half_width
            blocks["plain"] = z[..., self.plain_axes]
        if self.periodic_axes:
            phase = x[..., self.periodic_axes] @ self.periodic_wavevectors  # (E, N, M)
            blocks["periodic_cos"] = torch.cos(phase)
            blocks["periodic_sin"] = torch.sin(phase)
        parts = [blocks[b] for b in BASE_BLOCKS if b in blocks]
        z = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        if self.n_fourier:  # blocks fourier_sin, fourier_cos
            proj = bmm(z, self.fourier_b)
            z = torch.cat([z, torch.sin(proj), torch.cos(proj)], dim=-1)
        return z

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The networks alone: x (E, N, dim) -> (E, N, out_dim)."""
        h = self.encode(x)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = baddbmm(b, h, w)
            if i < last:
                h = self.activation(h)
        return h

"""An MLP with residual connections as a network architecture from outside the package.

Importing this module registers it as ``"residual_mlp"``; a case names it
``network.architecture = "tests.mpi.residual_mlp:ResidualMLP"`` (imported when the case is
read). It is built on the batched layers (:mod:`ddpinn.nn.batched`), so each expert's bits do
not depend on how many experts a rank owns, and draws each expert's weights from its sid's
stream. It does not claim the Taylor-mode engine: its derivatives come from autograd.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ddpinn.nn import BatchedExperts, register_architecture
from ddpinn.nn.batched import baddbmm
from ddpinn.nn.experts import ACTIVATIONS, expert_generator


@register_architecture("residual_mlp")
class ResidualMLP(BatchedExperts):
    """x -> h = tanh(x' W0 + b0); h <- h + act(h Wk + bk), k = 1..depth-1; u = h Wout + bout,
    with x' the point mapped to [-1, 1] in its expert's box.

    Parameters
    ----------
    spec : ddpinn.nn.architectures.ExpertSpec (width, depth, activation from its network)
    """

    def __init__(self, spec):
        super().__init__(spec.sids)
        net, dtype = spec.network, spec.dtype
        lower = torch.as_tensor(np.asarray(spec.lower, float), dtype=dtype)
        upper = torch.as_tensor(np.asarray(spec.upper, float), dtype=dtype)
        self.register_buffer("center", ((upper + lower) / 2)[:, None, :])
        self.register_buffer("half_width", ((upper - lower) / 2)[:, None, :])
        self.activation = ACTIVATIONS[net.activation]
        sizes = [lower.shape[-1]] + [net.width] * net.depth + [spec.out_dim]
        self.w, self.b = nn.ParameterList(), nn.ParameterList()
        per_expert = [self._init_expert(spec.seed, s, sizes) for s in self.sids]
        for layer in range(len(sizes) - 1):
            self.w.append(nn.Parameter(torch.stack([p[layer] for p in per_expert])
                                             .to(dtype)))
            self.b.append(nn.Parameter(torch.zeros(len(self.sids), 1, sizes[layer + 1],
                                                        dtype=dtype)))

    @staticmethod
    def _init_expert(seed, sid, sizes):
        """Xavier-normal weights from the sid's own stream (stream 7: not the MLP's)."""
        g = expert_generator(seed, sid, 7)
        return [torch.randn(a, b, dtype=torch.float64, generator=g) * math.sqrt(2.0 / (a + b))
                for a, b in zip(sizes[:-1], sizes[1:])]

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """x (E, N, dim) -> (E, N, out_dim)."""
        h = torch.tanh(baddbmm(self.b[0], (x - self.center) / self.half_width, self.w[0]))
        for w, b in zip(self.w[1:-1], self.b[1:-1]):
            h = h + self.activation(baddbmm(b, h, w))
        return baddbmm(self.b[-1], h, self.w[-1])

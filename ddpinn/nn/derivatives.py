"""Derivatives of expert outputs with respect to their inputs (autograd engine).

:class:`Fields` computes derivatives lazily and caches them, so only what the PDE and the
active interface conditions ask for is ever computed.
"""
from __future__ import annotations

import torch


def _grad(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d y / d x for y: (E, N), x: (E, N, d) -> (E, N, d). Points and experts are
    independent, so the gradient of the sum is the per-point gradient."""
    if not y.requires_grad:  # y does not depend on x (e.g. derivative of a linear function)
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


class Fields:
    """Outputs and their derivatives at a batch of points.

    Parameters
    ----------
    x : Tensor, shape (E, N, d), requires_grad
    u : Tensor, shape (E, N, m), the experts' outputs at ``x``
    axes : tuple of str, length d, e.g. ("x", "y", "t")
    outputs : tuple of str, length m, e.g. ("u", "v", "p")

    Derivatives always keep their graph: higher derivatives and the training backward pass
    differentiate them again.
    """

    def __init__(self, x, u, axes, outputs):
        self.x = x
        self.u = u
        self.axes = {n: i for i, n in enumerate(axes)}
        self.outputs = {n: i for i, n in enumerate(outputs)}
        self._grad = {}
        self._hess = {}

    def _k(self, comp) -> int:
        return self.outputs[comp] if isinstance(comp, str) else int(comp)

    def _a(self, axis) -> int:
        return self.axes[axis] if isinstance(axis, str) else int(axis)

    def value(self, comp) -> torch.Tensor:
        """Output ``comp`` (name or index): (E, N)."""
        return self.u[..., self._k(comp)]

    def grad(self, comp) -> torch.Tensor:
        """All first derivatives of ``comp``: (E, N, d)."""
        k = self._k(comp)
        if k not in self._grad:
            self._grad[k] = _grad(self.u[..., k], self.x)
        return self._grad[k]

    def d(self, comp, axis) -> torch.Tensor:
        """d comp / d axis: (E, N)."""
        return self.grad(comp)[..., self._a(axis)]

    def hess_row(self, comp, axis) -> torch.Tensor:
        """Second derivatives d^2 comp / d axis d (every axis): (E, N, d)."""
        k, a = self._k(comp), self._a(axis)
        if (k, a) not in self._hess:
            self._hess[(k, a)] = _grad(self.grad(k)[..., a], self.x)
        return self._hess[(k, a)]

    def d2(self, comp, a1, a2) -> torch.Tensor:
        """d^2 comp / d a1 d a2: (E, N)."""
        return self.hess_row(comp, a1)[..., self._a(a2)]

    def laplacian(self, comp, axes=None) -> torch.Tensor:
        """Sum of d^2 comp / d a^2 over ``axes`` (default: the space axes): (E, N)."""
        axes = axes if axes is not None else [a for a in self.axes if a != "t"]
        return sum(self.d2(comp, a, a) for a in axes)

    def grad_of(self, y: torch.Tensor) -> torch.Tensor:
        """Gradient of any per-point quantity y: (E, N) -> (E, N, d)."""
        return _grad(y, self.x)

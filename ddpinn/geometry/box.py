"""Axis-aligned boxes in space or space-time, their faces, and point sampling.

Coordinates are ordered space first, then time: ``(x, y, z, t)`` truncated to what the
problem has. All functions are pure and return float64 numpy arrays; the caller casts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ddpinn.geometry.sampling import unit_samples

SPACE_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Box:
    """A closed axis-aligned box ``[lower, upper]``.

    Parameters
    ----------
    lower, upper : tuple of float, shape (dim,)
    names : tuple of str, shape (dim,)
        Axis names, e.g. ``("x", "y", "t")``.
    """

    lower: tuple
    upper: tuple
    names: tuple

    def __post_init__(self):
        if not (len(self.lower) == len(self.upper) == len(self.names)):
            raise ValueError("Box: lower, upper and names must have the same length")
        for lo, hi, n in zip(self.lower, self.upper, self.names):
            if not hi > lo:
                raise ValueError(f"Box: axis {n!r} has upper {hi} <= lower {lo}")

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def width(self) -> np.ndarray:
        return np.asarray(self.upper, float) - np.asarray(self.lower, float)

    @property
    def volume(self) -> float:
        return float(np.prod(self.width))

    def axis(self, name: str) -> int:
        return self.names.index(name)

    def faces(self):
        """All ``2 * dim`` faces as :class:`Face` objects (lower side first per axis)."""
        return [Face(a, s) for a in range(self.dim) for s in (-1, +1)]


@dataclass(frozen=True)
class Face:
    """Face of a box: the ``side`` (-1 lower, +1 upper) of axis ``axis``."""

    axis: int
    side: int

    def coordinate(self, box: Box) -> float:
        return box.lower[self.axis] if self.side < 0 else box.upper[self.axis]

    def area(self, box: Box) -> float:
        return float(np.prod(np.delete(box.width, self.axis))) if box.dim > 1 else 1.0


def sample_box(box: Box, n: int, rng: np.random.Generator,
               sampling: str = "uniform") -> np.ndarray:
    """Points inside ``box`` of the set ``sampling`` (a name in
    :data:`ddpinn.geometry.sampling.UNIT_SAMPLERS`; uniform random by default): (n, dim)."""
    u = unit_samples(sampling, n, box.dim, rng)
    return np.asarray(box.lower) + u * box.width


def sample_face(box: Box, face: Face, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random points on one face of ``box``; returns shape (n, dim)."""
    pts = sample_box(box, n, rng)
    pts[:, face.axis] = face.coordinate(box)
    return pts


def grid_points(box: Box, shape: Sequence[int]):
    """Tensor-product grid including the end points.

    Returns
    -------
    axes : list of ndarray, each shape (shape[i],)
    points : ndarray, shape (prod(shape), dim), C order (last axis fastest)
    """
    axes = [np.linspace(lo, hi, int(n)) for lo, hi, n in zip(box.lower, box.upper, shape)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return axes, np.stack([m.ravel() for m in mesh], axis=-1)

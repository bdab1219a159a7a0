"""Constructive solid geometry: union, difference and intersection of shapes.

The signed distance is the usual min/max combination (exact outside a union and inside an
intersection; elsewhere its magnitude is a lower bound of the distance, which is what the
cell tests need). The boundary is made of the children's pieces, each keeping its tag; a
point of a child's piece belongs to the composite's boundary when the composite holds the
point just behind it (``x - eps n``) and not the one just in front (``x + eps n``), and no
earlier child's boundary passes through it (coincident faces count once). The pieces of the
shapes a difference subtracts get inward-flipped normals.
"""
from __future__ import annotations

import numpy as np

from ddpinn.geometry.pieces import Filtered
from ddpinn.geometry.primitives import unique
from ddpinn.geometry.shapes import Shape

#: Offset (relative to the bounding box) of the probes on either side of a boundary point.
PROBE = 1e-7


class Composite(Shape):
    """Base of the three operations; ``shapes`` has at least two members of one dimension."""

    def __init__(self, *shapes):
        if len(shapes) == 1 and isinstance(shapes[0], (list, tuple)):
            shapes = tuple(shapes[0])
        if len(shapes) < 2:
            raise ValueError(f"{type(self).__name__.lower()} needs at least 2 shapes, "
                             f"got {len(shapes)}")
        dims = {s.dim for s in shapes}
        if len(dims) != 1:
            raise ValueError(f"shapes of different dimensions {sorted(dims)} cannot be "
                             f"combined")
        self.shapes = tuple(shapes)
        self.dim = dims.pop()
        self.tags = unique(t for s in shapes for t in s.tags)
        self.lower, self.upper = self._bounds()
        if np.any(self.upper < self.lower):
            raise ValueError(f"the {type(self).__name__.lower()} of these shapes is empty "
                             f"(their bounding boxes do not meet)")

    def _bounds(self):
        raise NotImplementedError

    def _flip(self, k: int) -> bool:
        return False

    def _make_pieces(self):
        out = []
        eps = PROBE * self.scale
        for k, shape in enumerate(self.shapes):
            earlier = self.shapes[:k]

            def keep(x, n, earlier=earlier):
                ok = self.inside(x - eps * n) & ~self.inside(x + eps * n)
                for other in earlier:
                    ok &= np.abs(other.sdf(x)) > other.tol
                return ok
            out.extend(Filtered(p, keep, self._flip(k)) for p in shape.pieces())
        return out


class Union(Composite):
    """Points in any of the shapes."""

    def _bounds(self):
        return (np.min([s.lower for s in self.shapes], axis=0),
                np.max([s.upper for s in self.shapes], axis=0))

    def sdf(self, x):
        return np.min([s.sdf(x) for s in self.shapes], axis=0)

    def _inside(self, x, tol):
        out = np.zeros(len(x), bool)
        for s in self.shapes:
            out |= s._inside(x, tol)
        return out

    def _solid(self, x):
        return np.any([s._solid(x) for s in self.shapes], axis=0)

    def _classify(self, x, half):
        states = np.array([s._classify(x, half) for s in self.shapes])
        return np.where(np.any(states == 1.0, axis=0), 1.0,
                        np.where(np.all(states == 0.0, axis=0), 0.0, np.nan))


class Intersection(Composite):
    """Points in all of the shapes."""

    def _bounds(self):
        return (np.max([s.lower for s in self.shapes], axis=0),
                np.min([s.upper for s in self.shapes], axis=0))

    def sdf(self, x):
        return np.max([s.sdf(x) for s in self.shapes], axis=0)

    def _inside(self, x, tol):
        out = np.ones(len(x), bool)
        for s in self.shapes:
            out &= s._inside(x, tol)
        return out

    def _solid(self, x):
        return np.all([s._solid(x) for s in self.shapes], axis=0)

    def _classify(self, x, half):
        states = np.array([s._classify(x, half) for s in self.shapes])
        return np.where(np.all(states == 1.0, axis=0), 1.0,
                        np.where(np.any(states == 0.0, axis=0), 0.0, np.nan))


class Difference(Composite):
    """Points of the first shape that lie in none of the others."""

    def _bounds(self):
        return self.shapes[0].lower.copy(), self.shapes[0].upper.copy()

    def _flip(self, k):
        return k > 0

    def sdf(self, x):
        return np.max([self.shapes[0].sdf(x)] + [-s.sdf(x) for s in self.shapes[1:]], axis=0)

    def _inside(self, x, tol):
        out = self.shapes[0]._inside(x, tol)
        for s in self.shapes[1:]:
            out &= ~s._inside(x, -tol)
        return out

    def _solid(self, x):
        out = self.shapes[0]._solid(x)
        for s in self.shapes[1:]:
            out &= ~s._solid(x)
        return out

    def _classify(self, x, half):
        first = self.shapes[0]._classify(x, half)
        rest = np.array([s._classify(x, half) for s in self.shapes[1:]])
        return np.where((first == 1.0) & np.all(rest == 0.0, axis=0), 1.0,
                        np.where((first == 0.0) | np.any(rest == 1.0, axis=0), 0.0, np.nan))

"""Distances to the carrier surfaces of boundary pieces, in torch (for hard conditions).

The *carrier* of a piece is the whole surface it lies on: the plane of a face or disk cap,
the line of a segment, the full circle, sphere or cylinder of a curved piece. Its distance
phi_i(x) >= 0 is smooth away from the carrier and 0 exactly on it, so phi_i vanishes on the
piece whatever the rest of the shape does (Sukumar & Srivastava 2022). Where a carrier cuts
the domain's interior, phi_i vanishes there too; :mod:`ddpinn.boundary.hard` checks that.

Curved carriers use (|x - c|^2 - R^2) / (2R) in absolute value: polynomial in x, equal to
the distance |r - R| to first order near the surface and at least half of it everywhere.

:data:`CARRIERS` maps a piece class to its distance; add one with :func:`register_carrier`.
Pieces without a carrier (triangle sets of STL shapes) raise :class:`NoCarrier`.
"""
from __future__ import annotations

import torch

from ddpinn.geometry.pieces import (AlignedFace, CylinderSide, DiskCap, Filtered, Segment,
                                    Sphere)

#: piece class -> ``distance(piece, x (..., dim)) -> (...)``
CARRIERS: dict = {}


class NoCarrier(ValueError):
    """A piece has no carrier surface with a closed-form distance."""


def register_carrier(cls):
    """Decorator: ``distance(piece, x)`` is the carrier distance of pieces of ``cls``."""
    def deco(fn):
        CARRIERS[cls] = fn
        return fn
    return deco


def carrier_distance(piece, x: torch.Tensor) -> torch.Tensor:
    """Distance (...,) from points x (..., dim) to the carrier surface of ``piece``.

    Raises :class:`NoCarrier` for a piece class without one (:data:`CARRIERS`)."""
    fn = CARRIERS.get(type(piece))
    if fn is None:
        raise NoCarrier(f"boundary pieces of type {type(piece).__name__} (tag "
                        f"{piece.tag!r}) have no carrier surface with a closed-form "
                        f"distance")
    return fn(piece, x)


def _const(values, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=x.dtype, device=x.device)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_j a[..., j] b[..., j] in a fixed order: no reduction kernel, whose order may
    depend on the batch's size, so every expert rounds alike on any rank count."""
    out = a[..., 0] * b[..., 0]
    for j in range(1, a.shape[-1]):
        out = out + a[..., j] * b[..., j]
    return out


@register_carrier(AlignedFace)
def _plane(piece, x):
    return (x[..., piece.axis] - float(piece.lower[piece.axis])).abs()


@register_carrier(DiskCap)
def _cap_plane(piece, x):
    return (x[..., piece.axis] - float(piece.center[piece.axis])).abs()


@register_carrier(Segment)
def _line(piece, x):
    t = piece.b - piece.a
    n = _const([-t[1], t[0]], x) / float((t ** 2).sum() ** 0.5)  # unit normal of the line
    return _dot(x[..., :2] - _const(piece.a, x), n.expand(x.shape[:-1] + (2,))).abs()


def _round(x, center, radius: float) -> torch.Tensor:
    rel = x - center
    r2 = _dot(rel, rel)
    return (r2 - radius * radius).abs() / (2.0 * radius)


@register_carrier(Sphere)
def _sphere(piece, x):
    return _round(x, _const(piece.center, x), piece.radius)


@register_carrier(CylinderSide)
def _cylinder(piece, x):
    cr = list(piece.cross)
    return _round(x[..., cr], _const(piece.center[cr], x), float(piece.radius))


@register_carrier(Filtered)
def _filtered(piece, x):
    return carrier_distance(piece.piece, x)

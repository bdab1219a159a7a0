"""Grid decomposition of a box into subdomains, their neighbour graph and interfaces.

Everything here is rank-independent: a subdomain is named by its id ``sid`` (C order over
the grid, last axis fastest) and an interface by its position in ``Decomposition.interfaces``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ddpinn.geometry import Box


@dataclass(frozen=True)
class Subdomain:
    """One cell of the grid: its id, grid index and box."""

    sid: int
    index: tuple
    box: Box


@dataclass(frozen=True)
class Interface:
    """A shared face between two subdomains.

    ``lower`` is the subdomain on the low side along ``axis``, ``upper`` the one on the high
    side. For a wrap-around interface of a periodic axis the two sides sit at different
    coordinates (``coord[lower]`` is the top of the box, ``coord[upper]`` its bottom), which
    periodic experts treat as the same place.
    """

    iid: int
    lower: int
    upper: int
    axis: int
    coord_lower: float
    coord_upper: float
    face_box: Box  # tangential extent of the face; its own extent along ``axis`` is unused
    kind: str  # "space" or "time"
    wrap: bool = False

    @property
    def sids(self) -> tuple:
        return (self.lower, self.upper)

    def other(self, sid: int) -> int:
        return self.upper if sid == self.lower else self.lower

    def coord(self, sid: int) -> float:
        """Position of the interface along ``axis`` in the coordinates of ``sid``."""
        return self.coord_lower if sid == self.lower else self.coord_upper

    def seed_key(self) -> tuple:
        """Rank-independent key for this interface's random points."""
        return (self.lower, self.upper, self.axis, int(self.wrap))


@dataclass
class Decomposition:
    """A box cut into ``prod(grid)`` subdomains.

    Attributes
    ----------
    box : Box
    grid : tuple of int, shape (dim,)
    periodic : tuple of bool, shape (dim,)
    subdomains : list of Subdomain, length S
    interfaces : list of Interface
    """

    box: Box
    grid: tuple
    periodic: tuple
    subdomains: list
    interfaces: list
    _by_sid: dict = field(default_factory=dict, repr=False)

    @property
    def n_subdomains(self) -> int:
        return len(self.subdomains)

    def interfaces_of(self, sid: int) -> list:
        """Interfaces touching ``sid``, in global (iid) order."""
        if not self._by_sid:
            for itf in self.interfaces:
                self._by_sid.setdefault(itf.lower, []).append(itf)
                self._by_sid.setdefault(itf.upper, []).append(itf)
        return self._by_sid.get(sid, [])

    def neighbours(self, sid: int) -> list:
        return sorted({itf.other(sid) for itf in self.interfaces_of(sid)})

    def boundary_faces(self, sid: int, time_axis: int | None = None):
        """Faces of ``sid`` on the global boundary that carry boundary or initial data.

        Periodic axes have none; along time only the initial face (t = t0) counts.
        Returns a list of ``(axis, side)``.
        """
        sd = self.subdomains[sid]
        faces = []
        for a in range(self.box.dim):
            if self.periodic[a]:
                continue
            if sd.index[a] == 0:
                faces.append((a, -1))
            if sd.index[a] == self.grid[a] - 1 and a != time_axis:
                faces.append((a, +1))
        return faces


def decompose(box: Box, grid: Sequence[int], periodic: Sequence[bool] | None = None,
              time_axis: int | None = None) -> Decomposition:
    """Cut ``box`` into a uniform grid of subdomains.

    Parameters
    ----------
    box : Box
    grid : sequence of int, shape (dim,)
        Cells per axis, each >= 1.
    periodic : sequence of bool, shape (dim,), optional
        Periodic axes get wrap-around interfaces when they have more than one cell.
    time_axis : int, optional
        Index of the time axis; its interfaces are of kind ``"time"``.
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != box.dim:
        raise ValueError(f"grid has {len(grid)} entries but the domain has {box.dim} axes "
                         f"({', '.join(box.names)})")
    if any(g < 1 for g in grid):
        raise ValueError(f"grid sizes must be positive integers, got {list(grid)}")
    periodic = tuple(bool(p) for p in (periodic or [False] * box.dim))
    edges = [np.linspace(lo, hi, g + 1) for lo, hi, g in zip(box.lower, box.upper, grid)]

    subdomains = []
    for sid, idx in enumerate(np.ndindex(*grid)):
        lo = tuple(float(edges[a][i]) for a, i in enumerate(idx))
        hi = tuple(float(edges[a][i + 1]) for a, i in enumerate(idx))
        subdomains.append(Subdomain(sid, tuple(int(i) for i in idx), Box(lo, hi, box.names)))

    strides = np.cumprod((1,) + grid[::-1])[:-1][::-1]
    interfaces = []
    for sd in subdomains:
        for a in range(box.dim):
            i = sd.index[a]
            wrap = i == grid[a] - 1
            if wrap and not (periodic[a] and grid[a] > 1):
                continue
            upper_sid = sd.sid + (strides[a] if not wrap else -i * strides[a])
            upper_box = subdomains[upper_sid].box
            lo = list(sd.box.lower)
            hi = list(sd.box.upper)
            lo[a] = hi[a] = sd.box.upper[a]
            hi[a] = lo[a] + 1.0  # keep a valid Box; only the tangential extent is used
            interfaces.append(Interface(
                iid=len(interfaces), lower=sd.sid, upper=int(upper_sid), axis=a,
                coord_lower=float(sd.box.upper[a]), coord_upper=float(upper_box.lower[a]),
                face_box=Box(tuple(lo), tuple(hi), box.names),
                kind="time" if a == time_axis else "space", wrap=bool(wrap)))
    return Decomposition(box, grid, periodic, subdomains, interfaces)

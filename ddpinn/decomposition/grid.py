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
    interfaces : list of Interface, length I
    index : ndarray of int, shape (S, dim) -- grid index of every subdomain
    interface_sids : ndarray of int, shape (I, 2) -- (lower, upper) sid of every interface
    interface_axis : ndarray of int, shape (I,)
    """

    box: Box
    grid: tuple
    periodic: tuple
    subdomains: list
    interfaces: list
    index: np.ndarray = None
    interface_sids: np.ndarray = None
    interface_axis: np.ndarray = None
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

    def boundary_face_mask(self, time_axis: int | None = None) -> np.ndarray:
        """Which subdomains carry data on which face, for all at once.

        Returns
        -------
        ndarray of bool, shape (S, dim, 2): ``[sid, axis, 0]`` the lower face, ``[..., 1]``
        the upper one; the same faces as :meth:`boundary_faces`.
        """
        grid = np.asarray(self.grid)
        mask = np.stack([self.index == 0, self.index == grid - 1], axis=-1)
        mask[:, np.asarray(self.periodic, bool)] = False
        if time_axis is not None:
            mask[:, time_axis, 1] = False
        return mask

    def interface_counts(self) -> np.ndarray:
        """Number of interfaces touching each subdomain, shape (S,)."""
        return np.bincount(self.interface_sids.reshape(-1), minlength=self.n_subdomains)


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
    dim = box.dim
    edges = [np.linspace(lo, hi, g + 1) for lo, hi, g in zip(box.lower, box.upper, grid)]

    # All geometry as arrays over sids (C order, last axis fastest); Python objects are made
    # from them in one pass each, so the set-up stays linear in the number of subdomains.
    index = np.indices(grid).reshape(dim, -1).T  # (S, dim)
    lower = np.stack([edges[a][index[:, a]] for a in range(dim)], axis=1)
    upper = np.stack([edges[a][index[:, a] + 1] for a in range(dim)], axis=1)
    subdomains = [Subdomain(sid, tuple(idx), Box(tuple(lo), tuple(hi), box.names))
                  for sid, (idx, lo, hi) in enumerate(zip(index.tolist(), lower.tolist(),
                                                           upper.tolist()))]

    # Interface (sid, axis) pairs: every cell towards its upper neighbour along each axis,
    # wrapping around on periodic axes with more than one cell; ordered by (sid, axis).
    strides = np.cumprod((1,) + grid[::-1])[:-1][::-1]
    wrap = index == np.asarray(grid) - 1  # (S, dim)
    keep = ~wrap | (np.asarray(periodic) & (np.asarray(grid) > 1))
    itf_lower, itf_axis = np.nonzero(keep)  # row-major: sorted by sid, then axis
    itf_wrap = wrap[itf_lower, itf_axis]
    itf_upper = itf_lower + np.where(itf_wrap, -index[itf_lower, itf_axis], 1) * \
        strides[itf_axis]
    coord_lower = upper[itf_lower, itf_axis]
    coord_upper = lower[itf_upper, itf_axis]
    face_lo = lower[itf_lower].copy()
    face_hi = upper[itf_lower].copy()
    rows = np.arange(len(itf_lower))
    face_lo[rows, itf_axis] = coord_lower
    # Keep a valid Box; only the face's tangential extent is used.
    face_hi[rows, itf_axis] = coord_lower + 1.0
    interfaces = [
        Interface(iid=iid, lower=lo_sid, upper=up_sid, axis=a, coord_lower=cl, coord_upper=cu,
                  face_box=Box(tuple(flo), tuple(fhi), box.names),
                  kind="time" if a == time_axis else "space", wrap=w)
        for iid, (lo_sid, up_sid, a, cl, cu, flo, fhi, w) in enumerate(zip(
            itf_lower.tolist(), itf_upper.tolist(), itf_axis.tolist(), coord_lower.tolist(),
            coord_upper.tolist(), face_lo.tolist(), face_hi.tolist(), itf_wrap.tolist()))]
    return Decomposition(box, grid, periodic, subdomains, interfaces, index=index,
                         interface_sids=np.stack([itf_lower, itf_upper], axis=1),
                         interface_axis=itf_axis)

"""Grid decomposition of a box into subdomains, their neighbour graph and interfaces.

Everything here is rank-independent: a subdomain is named by its id ``sid`` (C order over
the grid, last axis fastest) and an interface by its position in ``Decomposition.interfaces``.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

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


class LazyItems(Sequence):
    """Read-only sequence whose items are made from arrays on first access, then kept.

    A rank touches only its own subdomains and their interfaces, so a decomposition of
    many thousands of subdomains never builds the Python objects of all of them.
    """

    def __init__(self, n: int, make):
        self._n, self._make, self._made = int(n), make, {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = operator.index(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"index {i} out of range for {self._n} items")
        item = self._made.get(i)
        if item is None:
            item = self._made[i] = self._make(i)
        return item


@dataclass(eq=False)
class Decomposition:
    """A box cut into ``prod(grid)`` subdomains.

    The geometry is held in arrays over sids and interface ids; ``subdomains`` and
    ``interfaces`` make their objects on access (:class:`LazyItems`).

    Attributes
    ----------
    box : Box
    grid : tuple of int, shape (dim,)
    periodic : tuple of bool, shape (dim,)
    subdomains : sequence of Subdomain, length S
    interfaces : sequence of Interface, length I, in (lower sid, axis) order
    index : ndarray of int, shape (S, dim) -- grid index of every subdomain
    lower, upper : ndarray of float, shape (S, dim) -- corners of every subdomain
    interface_sids : ndarray of int, shape (I, 2) -- (lower, upper) sid of every interface
    interface_axis : ndarray of int, shape (I,)
    shape : Shape or None -- the domain of a cut decomposition (None: the whole box)
    volume_fraction : ndarray (S,) or None -- share of each cell's space part in the domain
    boundary_measure : ndarray (S,) or None -- measure of the domain's boundary in each
        cell's space part (length in 2D, area in 3D; not multiplied by the time extent)
    interface_fraction : ndarray (I,) or None -- share of each interface face in the domain
    grid_lookup : ndarray of int, shape (prod(grid),), or None -- for a cut decomposition, the
        sid that points of every grid cell (C order) belong to: the cell's own sid, or for a
        dropped cell that of the nearest kept one
    edges : tuple of ndarray, length dim -- the grid's cell edges along every axis, entry
        ``a`` of shape (grid[a] + 1,), ascending from the box's lower to its upper bound
    """

    box: Box
    grid: tuple
    periodic: tuple
    subdomains: Sequence
    interfaces: Sequence
    index: np.ndarray = None
    lower: np.ndarray = None
    upper: np.ndarray = None
    interface_sids: np.ndarray = None
    interface_axis: np.ndarray = None
    shape: object = None
    volume_fraction: np.ndarray = None
    boundary_measure: np.ndarray = None
    interface_fraction: np.ndarray = None
    grid_lookup: np.ndarray = None
    edges: tuple = None
    _by_sid: tuple = field(default=None, repr=False)

    @property
    def n_subdomains(self) -> int:
        return len(self.subdomains)

    def interfaces_of(self, sid: int) -> list:
        """Interfaces touching ``sid``, in global (iid) order."""
        if self._by_sid is None:
            # Interface ids grouped by sid (CSR): a stable sort of the flattened (I, 2)
            # table keeps each sid's interfaces in iid order.
            order = np.argsort(self.interface_sids.reshape(-1), kind="stable")
            starts = np.concatenate([[0], np.cumsum(self.interface_counts())])
            self._by_sid = (order // 2, starts)
        iids, starts = self._by_sid
        return [self.interfaces[i] for i in iids[starts[sid]:starts[sid + 1]].tolist()]

    def neighbours(self, sid: int) -> list:
        return sorted({itf.other(sid) for itf in self.interfaces_of(sid)})

    def boundary_faces(self, sid: int, time_axis: int | None = None):
        """Faces of ``sid`` on the global boundary that carry boundary or initial data.

        Periodic axes have none; along time only the initial face (t = t0) counts. In a cut
        decomposition (``shape`` set) only the initial face remains: boundary points in space
        come from the shape. Returns a list of ``(axis, side)``.
        """
        sd = self.subdomains[sid]
        faces = []
        if self.shape is not None:
            return [(time_axis, -1)] if time_axis is not None and \
                sd.index[time_axis] == 0 else []
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
        if self.shape is not None:
            mask = np.zeros(self.index.shape + (2,), bool)
            if time_axis is not None:
                mask[:, time_axis, 0] = self.index[:, time_axis] == 0
            return mask
        mask = np.stack([self.index == 0, self.index == grid - 1], axis=-1)
        mask[:, np.asarray(self.periodic, bool)] = False
        if time_axis is not None:
            mask[:, time_axis, 1] = False
        return mask

    def interface_counts(self) -> np.ndarray:
        """Number of interfaces touching each subdomain, shape (S,)."""
        return np.bincount(self.interface_sids.reshape(-1), minlength=self.n_subdomains)


def grid_edges(box: Box, grid: Sequence[int], cuts=None) -> list:
    """Cell edges along every axis: uniform, or at the given inner cut positions.

    Parameters
    ----------
    box : Box
    grid : sequence of int, shape (dim,)
    cuts : sequence, length dim, optional
        Per axis None (uniform cells) or the ``grid[a] - 1`` inner cut positions, strictly
        increasing and strictly inside the box.

    Returns
    -------
    list of ndarray, entry ``a`` of shape (grid[a] + 1,)

    Raises
    ------
    ValueError
        Naming the axis whose cuts do not fit.
    """
    cuts = list(cuts) if cuts is not None else [None] * box.dim
    edges = []
    for a, (lo, hi, g, c) in enumerate(zip(box.lower, box.upper, grid, cuts)):
        if c is None:
            edges.append(np.linspace(lo, hi, g + 1))
            continue
        inner = np.asarray(c, dtype=np.float64).reshape(-1)
        name = box.names[a]
        if len(inner) != g - 1:
            raise ValueError(f"axis {name!r} has {g} cells in the grid, so it needs {g - 1} "
                             f"inner cut positions, got {len(inner)}")
        if len(inner) and not (np.all(np.diff(inner) > 0) and inner[0] > lo and inner[-1] < hi):
            raise ValueError(f"the cuts of axis {name!r} must increase strictly and lie "
                             f"strictly inside [{lo:g}, {hi:g}], got {inner.tolist()}")
        edges.append(np.concatenate([[lo], inner, [hi]]))
    return edges


def decompose(box: Box, grid: Sequence[int], periodic: Sequence[bool] | None = None,
              time_axis: int | None = None, cuts=None) -> Decomposition:
    """Cut ``box`` into a grid of subdomains (uniform, or at given positions per axis).

    Parameters
    ----------
    box : Box
    grid : sequence of int, shape (dim,)
        Cells per axis, each >= 1.
    periodic : sequence of bool, shape (dim,), optional
        Periodic axes get wrap-around interfaces when they have more than one cell.
    time_axis : int, optional
        Index of the time axis; its interfaces are of kind ``"time"``.
    cuts : sequence, length dim, optional
        Per axis None or its inner cut positions (:func:`grid_edges`).
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != box.dim:
        raise ValueError(f"grid has {len(grid)} entries but the domain has {box.dim} axes "
                         f"({', '.join(box.names)})")
    if any(g < 1 for g in grid):
        raise ValueError(f"grid sizes must be positive integers, got {list(grid)}")
    periodic = tuple(bool(p) for p in (periodic or [False] * box.dim))
    dim = box.dim
    edges = grid_edges(box, grid, cuts)

    # All geometry as arrays over sids (C order, last axis fastest): linear in S, no
    # Python object per subdomain until one is asked for.
    index = np.indices(grid).reshape(dim, -1).T  # (S, dim)
    lower = np.stack([edges[a][index[:, a]] for a in range(dim)], axis=1)
    upper = np.stack([edges[a][index[:, a] + 1] for a in range(dim)], axis=1)

    # Interface (sid, axis) pairs: every cell towards its upper neighbour along each axis,
    # wrapping around on periodic axes with more than one cell; ordered by (sid, axis).
    strides = np.cumprod((1,) + grid[::-1])[:-1][::-1]
    wrap = index == np.asarray(grid) - 1  # (S, dim)
    keep = ~wrap | (np.asarray(periodic) & (np.asarray(grid) > 1))
    itf_lower, itf_axis = np.nonzero(keep)  # row-major: sorted by sid, then axis
    itf_upper = itf_lower + np.where(wrap[itf_lower, itf_axis], -index[itf_lower, itf_axis],
                                     1) * strides[itf_axis]

    def subdomain(sid: int) -> Subdomain:
        return Subdomain(sid, tuple(index[sid].tolist()),
                         Box(tuple(lower[sid].tolist()), tuple(upper[sid].tolist()), box.names))

    def interface(iid: int) -> Interface:
        lo_sid, up_sid, a = int(itf_lower[iid]), int(itf_upper[iid]), int(itf_axis[iid])
        coord = float(upper[lo_sid, a])
        face_lo, face_hi = lower[lo_sid].tolist(), upper[lo_sid].tolist()
        face_lo[a] = coord
        face_hi[a] = coord + 1.0  # keep a valid Box; only the tangential extent is used
        return Interface(iid=iid, lower=lo_sid, upper=up_sid, axis=a, coord_lower=coord,
                         coord_upper=float(lower[up_sid, a]),
                         face_box=Box(tuple(face_lo), tuple(face_hi), box.names),
                         kind="time" if a == time_axis else "space",
                         wrap=bool(wrap[lo_sid, a]))

    return Decomposition(box, grid, periodic, LazyItems(len(index), subdomain),
                         LazyItems(len(itf_lower), interface), index=index, lower=lower,
                         upper=upper, interface_sids=np.stack([itf_lower, itf_upper], axis=1),
                         interface_axis=itf_axis, edges=tuple(edges))

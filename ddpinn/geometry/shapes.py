"""Closed spatial regions behind one seam: inside test, signed distance, uniform interior and
boundary sampling with unit outward normals and tags, measures per cell.

A :class:`Shape` is built from its signed distance (``sdf``, negative inside) and a list of
boundary pieces (:mod:`ddpinn.geometry.pieces`). Everything is float64 numpy and depends only
on the ``numpy.random.Generator`` or the integer seed it is given, so every rank computes the
same points and the same measures.
"""
from __future__ import annotations

import math

import numpy as np

#: Points within this distance (relative to the bounding box) of the boundary count as inside.
INSIDE_TOL = 1e-9
#: Tolerance (relative) of the test that a boundary point lies in a cell.
CELL_TOL = 1e-10
#: Rejection sampling: rounds, and draws without one hit after which a region is empty.
MAX_ROUNDS = 40
EMPTY_AFTER = 40_000
MAX_BATCH = 1_000_000


class EmptyRegion(ValueError):
    """No part of the domain (or of the requested boundary) lies in the requested cell."""


def _as_points(x, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"points must have shape (n, {dim}), got {x.shape}")
    return x


def collect(draw, n: int, rng: np.random.Generator, region: str, cell: str):
    """Rejection sampling until ``n`` points are accepted.

    Parameters
    ----------
    draw : callable ``(m, rng) -> (arrays, ok)``
        ``arrays`` a tuple of arrays with first dimension m, ``ok`` bool (m,).
    n : int
    region, cell : str
        What is sampled and where, for the message "no part of {region} lies in {cell}".

    Returns
    -------
    arrays : tuple of arrays, first dimension n
    rate : float -- accepted / drawn over all rounds
    """
    parts, count, drawn, accepted = [], 0, 0, 0
    arrays = None
    for _ in range(MAX_ROUNDS):
        need = n - count
        if accepted:
            m = int(min(math.ceil(1.2 * need * drawn / accepted) + 16, MAX_BATCH))
        elif drawn:  # nothing yet: grow geometrically up to the point of giving up
            m = min(4 * drawn, EMPTY_AFTER - drawn)
        else:
            m = int(min(math.ceil(1.2 * need) + 64, MAX_BATCH))
        arrays, ok = draw(m, rng)
        drawn += m
        hits = int(ok.sum())
        if hits:
            order = rng.permutation(hits)  # no bias towards the first piece drawn
            parts.append([a[ok][order] for a in arrays])
            count += hits
            accepted += hits
        if count >= n:
            break
        if accepted == 0 and drawn >= EMPTY_AFTER:
            raise EmptyRegion(f"no part of {region} lies in {cell}")
    else:
        raise EmptyRegion(f"only {count} of {n} points of {region} found in {cell} after "
                          f"{drawn} draws")
    if not parts:
        return tuple(a[:0] for a in arrays), 1.0
    out = tuple(np.concatenate([p[k] for p in parts])[:n] for k in range(len(arrays)))
    return out, accepted / drawn


#: Sizes (lattice points per axis) of the nested blocks whose signed distance may decide
#: them whole before single points are tested.
BLOCKS = (8, 4, 2)


def lattice(lower, upper, n: int, seed: int):
    """Jittered lattice: one uniform point in each cell of a regular grid of about ``n``
    cells over the box (axes with ``upper > lower``; degenerate axes stay at ``lower``).

    Returns
    -------
    points : ndarray (m, dim)
    index : ndarray of int (m, dim) -- grid cell of every point (0 on degenerate axes)
    k : int -- cells per live axis, a multiple of ``BLOCKS[0]``
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    live = upper > lower
    if not live.any():
        return lower[None].copy(), np.zeros((1, len(lower)), int), 1
    n_live = int(live.sum())
    k = max(int(math.ceil(n ** (1.0 / n_live) / BLOCKS[0])), 1) * BLOCKS[0]
    index = np.zeros((k ** n_live, len(lower)), int)
    index[:, live] = np.indices((k,) * n_live).reshape(n_live, -1).T
    jitter = np.random.default_rng(seed).random((len(index), n_live))
    pts = np.broadcast_to(lower, index.shape).copy()
    pts[:, live] += (index[:, live] + jitter) / k * (upper - lower)[live]
    return pts, index, k


class Shape:
    """A closed region of space. Subclasses set ``dim``, ``tags``, ``lower``, ``upper`` and
    implement :meth:`sdf` and :meth:`_make_pieces`.

    Attributes
    ----------
    dim : int -- space dimensions (1, 2 or 3)
    tags : tuple of str -- names of the boundary pieces, in order of first appearance
    lower, upper : ndarray, shape (dim,) -- bounding box
    """

    dim: int
    tags: tuple
    lower: np.ndarray
    upper: np.ndarray
    _pieces = None

    # -- what a subclass provides -----------------------------------------------------------
    def sdf(self, x) -> np.ndarray:
        """Signed distance (n,) of the points x (n, dim), negative inside."""
        raise NotImplementedError

    def _make_pieces(self) -> list:
        raise NotImplementedError

    # -- membership ---------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        """Largest extent of the bounding box (the length tolerances are relative to)."""
        return float(np.max(self.upper - self.lower))

    @property
    def tol(self) -> float:
        return INSIDE_TOL * self.scale

    def _inside(self, x: np.ndarray, tol: float) -> np.ndarray:
        """Points with signed distance <= tol: tol > 0 includes a band around the boundary,
        tol < 0 keeps only points deeper than -tol."""
        return self.sdf(x) <= tol

    def _solid(self, x: np.ndarray) -> np.ndarray:
        """Membership (n,) of points off the boundary: free to differ from :meth:`inside`
        on the boundary itself (a set of measure zero), for volume fractions."""
        return self._inside(x, 0.0)

    def _classify(self, x: np.ndarray, half: float) -> np.ndarray:
        """Whether the balls of radius ``half`` around the points x (n, dim) lie inside
        (1.0) or outside (0.0) the shape, or nan where undecided. Conservative."""
        d = self.sdf(x)
        return np.where(d <= -half, 1.0, np.where(d >= half + self.tol, 0.0, np.nan))

    def inside(self, x) -> np.ndarray:
        """Bool (n,) for points x (n, dim); points on the boundary count as inside."""
        return self._inside(_as_points(x, self.dim), self.tol)

    def pieces(self) -> list:
        """Boundary pieces (:class:`ddpinn.geometry.pieces.Piece`), in tag order."""
        if self._pieces is None:
            self._pieces = list(self._make_pieces())
        return self._pieces

    # -- cells --------------------------------------------------------------------------------
    def _cell(self, lower, upper):
        lo = self.lower.copy() if lower is None else np.asarray(lower, float).reshape(-1)
        hi = self.upper.copy() if upper is None else np.asarray(upper, float).reshape(-1)
        if lo.shape != (self.dim,) or hi.shape != (self.dim,):
            raise ValueError(f"cell bounds must have {self.dim} entries, got "
                             f"{lo.tolist()} and {hi.tolist()}")
        return lo, hi

    def _clipped(self, lo, hi, tags=None) -> list:
        pad = CELL_TOL * self.scale
        out = []
        for piece in self.pieces():
            if tags is not None and piece.tag not in tags:
                continue
            clipped = piece.clip(lo - pad, hi + pad)
            if clipped is not None and clipped.measure > 0:
                out.append(clipped)
        return out

    def _draw_boundary(self, pieces, lo, hi):
        """A draw function for :func:`collect` over boundary pieces, restricted to a cell."""
        measures = np.array([p.measure for p in pieces])
        prob = measures / measures.sum()
        tag_ids = [self.tags.index(p.tag) for p in pieces]
        pad = CELL_TOL * self.scale

        def draw(m, rng):
            counts = rng.multinomial(m, prob)
            pts, nrm, ids, ok = [], [], [], []
            for piece, c, t in zip(pieces, counts, tag_ids):
                if c == 0:
                    continue
                p, nv = piece.sample(int(c), rng)
                keep = np.all((p >= lo - pad) & (p <= hi + pad), axis=1)
                if keep.any():  # the composite's test only where the cell holds the point
                    keep[keep] = piece.accept(p[keep], nv[keep])
                ok.append(keep)
                pts.append(p)
                nrm.append(nv)
                ids.append(np.full(int(c), t, dtype=np.int64))
            return (np.concatenate(pts), np.concatenate(nrm), np.concatenate(ids)), \
                np.concatenate(ok)
        return draw

    # -- sampling -----------------------------------------------------------------------------
    def sample_interior(self, n: int, rng: np.random.Generator, lower=None, upper=None):
        """Uniform points (n, dim) in ``shape ∩ [lower, upper]`` (default: the bounding box).

        Raises :class:`EmptyRegion` when no point of the shape is found in the cell.
        """
        lo, hi = self._cell(lower, upper)
        lo, hi = np.maximum(lo, self.lower), np.minimum(hi, self.upper)
        what = f"[{lo.tolist()}, {hi.tolist()}]"
        if np.any(hi <= lo):
            raise EmptyRegion(f"no part of the domain lies in {what}")

        def draw(m, rng):
            pts = lo + rng.random((m, self.dim)) * (hi - lo)
            return (pts,), self.inside(pts)
        (pts,), _ = collect(draw, int(n), rng, "the domain", what)
        return pts

    def sample_boundary(self, n: int, rng: np.random.Generator, lower=None, upper=None):
        """Uniform points by boundary measure on ``boundary ∩ [lower, upper]``.

        Returns
        -------
        points : ndarray (n, dim)
        normals : ndarray (n, dim) -- unit, outward
        tag_ids : ndarray of int64 (n,) -- indices into ``self.tags``
        """
        lo, hi = self._cell(lower, upper)
        what = f"[{lo.tolist()}, {hi.tolist()}]"
        pieces = self._clipped(lo, hi)
        if not pieces:
            raise EmptyRegion(f"no part of the domain's boundary lies in {what}")
        out, _ = collect(self._draw_boundary(pieces, lo, hi), int(n), rng,
                         "the domain's boundary", what)
        return out

    def quadrature(self, tag: str, n: int, rng: np.random.Generator):
        """Monte Carlo rule on the boundary piece ``tag``.

        Returns
        -------
        points, normals : ndarray (n, dim)
        weights : ndarray (n,) -- equal, summing to the measure of the piece (exact for
            primitives; estimated from the acceptance rate where a composite cuts a piece)
        """
        if tag not in self.tags:
            raise ValueError(f"boundary tag {tag!r} is not one of the domain's tags "
                             f"{list(self.tags)}")
        pieces = [p for p in self.pieces() if p.tag == tag and p.measure > 0]
        if not pieces:
            raise EmptyRegion(f"the boundary piece {tag!r} is empty")
        total = sum(p.measure for p in pieces)
        big = np.full(self.dim, np.inf)
        (pts, normals, _), rate = collect(self._draw_boundary(pieces, -big, big), int(n),
                                          rng, f"the boundary piece {tag!r}", "the domain")
        return pts, normals, np.full(len(pts), total * rate / max(len(pts), 1))

    # -- measures per cell --------------------------------------------------------------------
    def _fraction(self, lo, hi, n, seed) -> float:
        """Fraction of the (possibly flat) box [lo, hi] lying in the shape."""
        if not (np.all(lo <= self.upper) and np.all(hi >= self.lower)):
            return 0.0
        whole = float(self._classify(0.5 * (lo + hi)[None], 0.5 * np.linalg.norm(hi - lo))[0])
        if not np.isnan(whole):
            return whole
        pts, index, k = lattice(lo, hi, n, seed)
        step = (hi - lo) / k
        value = np.full(len(pts), np.nan)
        open_ = np.arange(len(pts))
        # Nested blocks the signed distance at their centre decides whole; single points
        # only where the boundary may pass (a layer about one lattice step thick).
        for size in BLOCKS:
            if k % size or not len(open_):
                continue
            dims = tuple(k // size if w > 0 else 1 for w in hi - lo)
            flat = np.ravel_multi_index(tuple((index[open_] // size).T), dims)
            uniq, which = np.unique(flat, return_inverse=True)
            blocks = np.stack(np.unravel_index(uniq, dims), axis=1)
            state = self._classify(lo + (blocks + 0.5) * size * step,
                                   0.5 * size * float(np.linalg.norm(step)))
            value[open_] = state[which.reshape(-1)]
            open_ = open_[np.isnan(value[open_])]
        if len(open_):
            value[open_] = self._solid(pts[open_])
        return float(np.mean(value))

    def volume_fraction(self, lower, upper, n: int = 20000, seed: int = 0) -> float:
        """Estimate of ``|shape ∩ cell| / |cell|``: exactly 1.0 or 0.0 when the signed distance
        at the centre decides it, otherwise the share of a shifted lattice of ~n points."""
        lo, hi = self._cell(lower, upper)
        return self._fraction(lo, hi, n, seed)

    def face_fraction(self, lower, upper, axis: int, coord: float, n: int = 4096,
                      seed: int = 0) -> float:
        """Share of the face ``{x[axis] = coord}`` of the cell lying in the shape."""
        lo, hi = self._cell(lower, upper)
        lo, hi = lo.copy(), hi.copy()
        lo[axis] = hi[axis] = float(coord)
        return self._fraction(lo, hi, n, seed)

    def boundary_measure(self, lower, upper, n: int = 4096, seed: int = 0) -> float:
        """Length (2D), area (3D) or number of points (1D) of ``boundary ∩ cell``; exact
        where no composite cuts the pieces, else each piece's measure times the share of a
        jittered lattice of ~n of its points (in its parameters) that belong."""
        lo, hi = self._cell(lower, upper)
        pieces = self._clipped(lo, hi)
        if not pieces:
            return 0.0
        total = sum(p.measure for p in pieces)
        pad = CELL_TOL * self.scale
        out = 0.0
        for piece in pieces:
            m = max(int(math.ceil(n * piece.measure / total)), 64)
            k = piece.param_dim
            pts, nv = piece.from_unit(lattice(np.zeros(k), np.ones(k), m, seed)[0])
            ok = np.all((pts >= lo - pad) & (pts <= hi + pad), axis=1) & piece.accept(pts, nv)
            out += piece.measure * float(ok.mean())
        return out

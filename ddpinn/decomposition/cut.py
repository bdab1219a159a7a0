"""Cut-cell decomposition: the grid decomposition of a shape's bounding box, keeping only the
cells and interfaces that meet the shape.

Everything is decided from the shape's deterministic cell measures
(:meth:`~ddpinn.geometry.shapes.Shape.volume_fraction`, ``face_fraction``,
``boundary_measure``), so every rank computes the same decomposition without talking.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ddpinn.decomposition.grid import Decomposition, LazyItems, Subdomain


def _space_cells(decomp: Decomposition, space: list):
    """Unique space parts of the cells: (first sid of each (C,), inverse (S,))."""
    _, first, inverse = np.unique(decomp.index[:, space], axis=0, return_index=True,
                                  return_inverse=True)
    return first, inverse.reshape(-1)


def nearest_kept(grid, keep: np.ndarray, new_of_old: np.ndarray) -> np.ndarray:
    """For every grid cell (C order) the new sid of the nearest kept cell (itself when kept),
    by steps between face neighbours; ties go to the smaller sid. Shape (prod(grid),)."""
    label = np.where(keep, new_of_old, -1).reshape(grid)
    big = np.iinfo(np.int64).max
    while np.any(label < 0):
        best = np.full(label.shape, big)
        for a in range(label.ndim):
            for step in (1, -1):
                shifted = np.full(label.shape, -1)
                src = [slice(None)] * label.ndim
                dst = [slice(None)] * label.ndim
                src[a] = slice(None, -1) if step == 1 else slice(1, None)
                dst[a] = slice(1, None) if step == 1 else slice(None, -1)
                shifted[tuple(dst)] = label[tuple(src)]
                best = np.where(shifted >= 0, np.minimum(best, shifted), best)
        label = np.where((label < 0) & (best < big), best, label)
    return label.reshape(-1)


def _lookup(decomp: Decomposition, keep: np.ndarray, new_of_old: np.ndarray) -> np.ndarray:
    """:func:`nearest_kept` for the sids of ``decomp`` (a grid decomposition, or one cut
    before: its rows need not cover the grid)."""
    cells = np.ravel_multi_index(tuple(decomp.index.T), decomp.grid)
    full_keep = np.zeros(int(np.prod(decomp.grid)), bool)
    full_new = np.full(len(full_keep), -1, dtype=np.int64)
    full_keep[cells] = keep
    full_new[cells] = new_of_old
    return nearest_kept(decomp.grid, full_keep, full_new)


def _interface_fractions(decomp, shape, space, time_axis, candidates, vf_of_sid, n_face):
    """Share of each candidate interface's face inside the shape, shape (len(candidates),).

    A time interface's face is the whole space part of its cells; a space interface's face
    is the space part with one coordinate fixed. Faces repeated over time slabs are measured
    once.
    """
    out = np.empty(len(candidates))
    cache = {}
    for k, iid in enumerate(candidates.tolist()):
        lo_sid, axis = int(decomp.interface_sids[iid, 0]), int(decomp.interface_axis[iid])
        if axis == time_axis:
            out[k] = vf_of_sid[lo_sid]
            continue
        coord = float(decomp.upper[lo_sid, axis])
        key = (tuple(decomp.index[lo_sid, space].tolist()), axis)
        if key not in cache:
            cache[key] = shape.face_fraction(decomp.lower[lo_sid, space],
                                             decomp.upper[lo_sid, space],
                                             space.index(axis), coord, n=n_face)
        out[k] = cache[key]
    return out


def cut_decomposition(decomp: Decomposition, shape, time_axis: int | None = None, *,
                      n_volume: int = 20000, n_face: int = 4096,
                      n_boundary: int = 4096) -> Decomposition:
    """Keep the cells and interfaces of a grid decomposition that meet ``shape``.

    Parameters
    ----------
    decomp : Decomposition
        Grid decomposition of the shape's bounding box (times the time interval when
        ``time_axis`` is given; the shape acts on the other, space, axes).
    shape : Shape
    time_axis : int, optional
    n_volume, n_face, n_boundary : int
        Lattice sizes of the volume-fraction, face-fraction and boundary-measure estimates.

    Returns
    -------
    Decomposition
        Cells with volume fraction 0 dropped and the others renumbered ``0..S'-1`` in their
        old order (grid index kept in ``index``); interfaces kept where both cells stay and
        the shared face meets the domain (face fraction > 0), renumbered in order. Its
        ``shape``, ``volume_fraction`` (S'), ``boundary_measure`` (S') and
        ``interface_fraction`` (I') are set.

    Raises
    ------
    ValueError
        When the dimensions disagree or no cell meets the shape.
    """
    dim = decomp.box.dim
    space = [a for a in range(dim) if a != time_axis]
    if len(space) != shape.dim:
        raise ValueError(f"the shape has {shape.dim} space dimensions but the decomposition "
                         f"has {len(space)} ({', '.join(decomp.box.names[a] for a in space)})")
    first, inverse = _space_cells(decomp, space)
    lo, hi = decomp.lower[first][:, space], decomp.upper[first][:, space]
    vf_cell = np.array([shape.volume_fraction(lo[c], hi[c], n=n_volume)
                        for c in range(len(first))])
    keep = vf_cell[inverse] > 0
    if not keep.any():
        raise ValueError("no subdomain of the grid meets the domain's shape: check the "
                         "shape's coordinates against the grid's box")
    bm_cell = np.array([shape.boundary_measure(lo[c], hi[c], n=n_boundary)
                        if vf_cell[c] > 0 else 0.0 for c in range(len(first))])

    old_sids = np.flatnonzero(keep)
    new_of_old = np.full(len(keep), -1, dtype=np.int64)
    new_of_old[old_sids] = np.arange(len(old_sids))
    sids = decomp.interface_sids
    candidates = np.flatnonzero(keep[sids[:, 0]] & keep[sids[:, 1]])
    fraction = _interface_fractions(decomp, shape, space, time_axis, candidates,
                                    vf_cell[inverse], n_face)
    old_iids = candidates[fraction > 0]

    def subdomain(sid: int) -> Subdomain:
        old = decomp.subdomains[int(old_sids[sid])]
        return Subdomain(sid, old.index, old.box)

    def interface(iid: int):
        old = decomp.interfaces[int(old_iids[iid])]
        return dataclasses.replace(old, iid=iid, lower=int(new_of_old[old.lower]),
                                   upper=int(new_of_old[old.upper]))

    return Decomposition(
        decomp.box, decomp.grid, decomp.periodic, LazyItems(len(old_sids), subdomain),
        LazyItems(len(old_iids), interface), index=decomp.index[old_sids],
        lower=decomp.lower[old_sids], upper=decomp.upper[old_sids],
        interface_sids=new_of_old[sids[old_iids]], interface_axis=decomp.interface_axis[old_iids],
        shape=shape, volume_fraction=vf_cell[inverse][old_sids],
        boundary_measure=bm_cell[inverse][old_sids],
        interface_fraction=fraction[fraction > 0],
        grid_lookup=_lookup(decomp, keep, new_of_old), edges=decomp.edges)

"""Which input features of an expert are which: the contract between the encoding of
:class:`~ddpinn.nn.experts.BatchedMLP` and the Taylor-mode engine.

The encoding maps points (E, N, dim) to features (E, N, width) in blocks of columns, in the
order of :data:`BLOCKS`:

=================  ===========================================  ==========================
block              columns                                      count
=================  ===========================================  ==========================
``plain``          ``(x_a - center_a) / half_width_a``          one per plain axis
``periodic_cos``   ``cos(x_per @ W)``, W the wavevectors (P, M)  M (n_modes)
``periodic_sin``   ``sin(x_per @ W)``                           M
``fourier_sin``    ``sin(base @ B)``, base = the blocks above   n_fourier
``fourier_cos``    ``cos(base @ B)``                            n_fourier
=================  ===========================================  ==========================

The encoding assembles its features from :class:`EncodingLayout` and the engine reads its
columns from the same object, so the order is written down once, here.

The periodic wavevectors come from :data:`PERIODIC_MODES` (``network.periodic_modes``):
``"axes"`` takes ``k e_p``, k = 1..harmonics, on each periodic axis p alone; ``"mixed"`` takes
every integer wavevector with ``max |k_p| <= harmonics`` (one of each pair +-k), so products of
the axes' harmonics such as ``sin x cos y cos z`` are single features, not something the
network has to build; ``"equal_parity"`` keeps those of ``"mixed"`` whose entries are all odd or
all even, the modes of flows with the Taylor-Green symmetry (so a larger ``harmonics`` costs
about a quarter of the features in 3D).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: Blocks of the encoding, in column order; the first three form the Fourier features' base.
BLOCKS = ("plain", "periodic_cos", "periodic_sin", "fourier_sin", "fourier_cos")
BASE_BLOCKS = BLOCKS[:3]


@dataclass(frozen=True)
class EncodingLayout:
    """Column ranges of each block of an encoding (see the module docstring).

    Parameters
    ----------
    n_plain : int, number of plain (normalised) axes
    n_modes : int, number of periodic wavevectors (columns of each of cos and sin)
    n_fourier : int, number of random Fourier features
    """

    n_plain: int
    n_modes: int
    n_fourier: int

    @property
    def sizes(self) -> dict:
        """{block: number of columns}, in column order."""
        periodic = self.n_modes
        return dict(zip(BLOCKS, (self.n_plain, periodic, periodic, self.n_fourier,
                                 self.n_fourier)))

    def columns(self, block: str) -> slice:
        """The columns of ``block``."""
        start = 0
        for name, size in self.sizes.items():
            if name == block:
                return slice(start, start + size)
            start += size
        raise KeyError(f"unknown encoding block {block!r}; blocks: {', '.join(BLOCKS)}")

    @property
    def base_width(self) -> int:
        """Columns of the blocks the Fourier features are computed from."""
        return sum(self.sizes[b] for b in BASE_BLOCKS)

    @property
    def width(self) -> int:
        """All columns."""
        return sum(self.sizes.values())

    def check(self, features) -> None:
        """Raise ValueError unless ``features`` (E, N, width) has this layout's width."""
        if features.shape[-1] != self.width:
            raise ValueError(f"encoding has {features.shape[-1]} features, its layout "
                             f"{self} says {self.width}")


def axis_wavevectors(n_axes: int, harmonics: int) -> np.ndarray:
    """``k e_p`` for p = 0..n_axes-1, k = 1..harmonics, axis-major: (n_axes * harmonics, n_axes)."""
    return np.concatenate([np.outer(np.arange(1, harmonics + 1), np.eye(n_axes)[p])
                           for p in range(n_axes)]).reshape(-1, n_axes).astype(int)


def mixed_wavevectors(n_axes: int, harmonics: int) -> np.ndarray:
    """Every integer k != 0 with ``max |k_p| <= harmonics`` whose first non-zero entry is
    positive (k and -k give the same cos/sin pair), by max-norm then lexicographically:
    (((2 harmonics + 1)^n_axes - 1) / 2, n_axes)."""
    rng = range(-harmonics, harmonics + 1)
    keep = [k for k in itertools.product(rng, repeat=n_axes)
            if any(k) and next(c for c in k if c) > 0]
    keep.sort(key=lambda k: (max(abs(c) for c in k), k))
    return np.array(keep, dtype=int).reshape(-1, n_axes)


def equal_parity_wavevectors(n_axes: int, harmonics: int) -> np.ndarray:
    """The wavevectors of :func:`mixed_wavevectors` whose entries are all odd or all even
    (zero is even), in the same order. They form a lattice closed under sums, so a flow whose
    data lies on it stays there: the Taylor-Green vortex, whose modes k = (+-1, +-1, +-1)
    only ever make modes of equal parity (quadratic terms add wavevectors; pressure and
    viscosity keep them). (M, n_axes); the same as ``mixed`` on one axis."""
    k = mixed_wavevectors(n_axes, harmonics)
    return k[np.all(k % 2 == k[:, :1] % 2, axis=1)]


#: network.periodic_modes -> (n_axes, harmonics) -> integer wavevectors (M, n_axes)
PERIODIC_MODES = {"axes": axis_wavevectors, "mixed": mixed_wavevectors,
                  "equal_parity": equal_parity_wavevectors}

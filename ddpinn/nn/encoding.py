"""Which input features of an expert are which: the contract between the encoding of
:class:`~ddpinn.nn.experts.BatchedMLP` and the Taylor-mode engine.

The encoding maps points (E, N, dim) to features (E, N, width) in blocks of columns, in the
order of :data:`BLOCKS`:

=================  ===========================================  ==========================
block              columns                                      count
=================  ===========================================  ==========================
``plain``          ``(x_a - center_a) / half_width_a``          one per plain axis
``periodic_cos``   ``cos(k_j x_p)``, flattened (P, harmonics)   P * harmonics
``periodic_sin``   ``sin(k_j x_p)``, flattened (P, harmonics)   P * harmonics
``fourier_sin``    ``sin(base @ B)``, base = the blocks above   n_fourier
``fourier_cos``    ``cos(base @ B)``                            n_fourier
=================  ===========================================  ==========================

The encoding assembles its features from :class:`EncodingLayout` and the engine reads its
columns from the same object, so the order is written down once, here.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Blocks of the encoding, in column order; the first three form the Fourier features' base.
BLOCKS = ("plain", "periodic_cos", "periodic_sin", "fourier_sin", "fourier_cos")
BASE_BLOCKS = BLOCKS[:3]


@dataclass(frozen=True)
class EncodingLayout:
    """Column ranges of each block of an encoding (see the module docstring).

    Parameters
    ----------
    n_plain : int, number of plain (normalised) axes
    n_periodic : int, number of periodic axes
    harmonics : int, frequencies per periodic axis
    n_fourier : int, number of random Fourier features
    """

    n_plain: int
    n_periodic: int
    harmonics: int
    n_fourier: int

    @property
    def sizes(self) -> dict:
        """{block: number of columns}, in column order."""
        periodic = self.n_periodic * self.harmonics
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

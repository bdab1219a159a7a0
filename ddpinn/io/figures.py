"""Figure helpers shared by every plotting module: a Matplotlib figure on the Agg canvas
(never ``pyplot``: no global figure registry, no display needed) and an atomic PNG write.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddpinn.io.atomic import atomic_output

DPI = 120


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A constrained-layout figure of ``width`` x ``height`` inches on the Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: independent of the user's backend
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and release its memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            # The temp name ends in ".tmp", so the format must be given explicitly.
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        fig.clear()
    return path


__all__ = ["DPI", "new_figure", "save_figure"]

"""PDE families; importing this package fills the registry.

The public plugin API (``docs/plugins.md``): subclass :class:`PDE` (or a family base such as
:class:`IncompressibleNS`), register it with :func:`register_pde` or name it in a case file as
``"package.module:ClassName"``; its residual receives :class:`Fields` (or the Taylor-mode
engine's equivalent); its reference data is a :class:`Reference`.
"""
import importlib

from ddpinn.pdes.base import PDE, PDES, register_pde
from ddpinn.pdes import elliptic, parabolic, navier_stokes, wave  # noqa: F401
from ddpinn.pdes.elliptic import sine_product
from ddpinn.pdes.navier_stokes import IncompressibleNS
from ddpinn.nn.derivatives import Fields
from ddpinn.io.reference import Reference, data_dir


def get_pde_class(name: str):
    """Look ``name`` up in the registry (filled by importing this package), or import
    ``"package.module:ClassName"``."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"field 'pde.name' = {name!r} cannot be imported: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, PDE)):
            raise ValueError(f"field 'pde.name' = {name!r} is not a ddpinn.pdes.PDE subclass")
        return cls
    if name not in PDES:
        raise ValueError(f"field 'pde.name' = {name!r} is not a known PDE; choose one of: "
                         f"{', '.join(sorted(PDES))}, or 'package.module:ClassName'")
    return PDES[name]


__all__ = ["PDE", "PDES", "get_pde_class", "register_pde", "IncompressibleNS", "Fields",
           "Reference", "data_dir", "sine_product"]

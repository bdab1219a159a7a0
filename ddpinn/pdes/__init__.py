"""PDE families; importing this package fills the registry.

The public plugin API (``docs/plugins.md``): subclass :class:`PDE` (or a family base such as
:class:`IncompressibleNS`), register it with :func:`register_pde` or name it in a case file as
``"package.module:ClassName"``; its residual receives :class:`Fields` (or the Taylor-mode
engine's equivalent); its reference data is a :class:`Reference`.
"""
from ddpinn.pdes.base import PDE, PDES, get_pde_class, register_pde
from ddpinn.pdes import elliptic, parabolic, navier_stokes  # noqa: F401
from ddpinn.pdes.elliptic import sine_product
from ddpinn.pdes.navier_stokes import IncompressibleNS
from ddpinn.nn.derivatives import Fields
from ddpinn.io.reference import Reference, data_dir

__all__ = ["PDE", "PDES", "get_pde_class", "register_pde", "IncompressibleNS", "Fields",
           "Reference", "data_dir", "sine_product"]

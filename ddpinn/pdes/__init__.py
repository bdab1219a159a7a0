"""PDE families; importing this package fills the registry."""
from ddpinn.pdes.base import PDE, PDES, get_pde_class, register_pde
from ddpinn.pdes import elliptic, parabolic, navier_stokes  # noqa: F401

__all__ = ["PDE", "PDES", "get_pde_class", "register_pde"]

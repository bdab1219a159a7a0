"""References that ddpinn computes itself (no MPI): a pseudo-spectral Navier-Stokes solver
for periodic boxes, the readers of published diagnostics, and the Cole-Hopf solution of
the viscous Burgers equation (:mod:`ddpinn.references.burgers`)."""
from ddpinn.references.spectral import (TGVReference, read_reference_netcdf, solve,
                                        taylor_green_reference, taylor_green_velocity)

__all__ = ["TGVReference", "read_reference_netcdf", "solve", "taylor_green_reference",
           "taylor_green_velocity"]

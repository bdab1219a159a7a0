"""References that ddpinn computes itself (no MPI): a pseudo-spectral Navier-Stokes solver
for periodic boxes and the readers of published diagnostics."""
from ddpinn.references.spectral import (TGVReference, read_reference_netcdf, solve,
                                        taylor_green_reference, taylor_green_velocity)

__all__ = ["TGVReference", "read_reference_netcdf", "solve", "taylor_green_reference",
           "taylor_green_velocity"]

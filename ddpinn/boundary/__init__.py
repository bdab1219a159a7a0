"""Boundary conditions on tagged boundary pieces: kinds (a registry), values (numbers,
expressions, the exact solution, functions) and the linear rows they impose on points."""
from ddpinn.boundary.kinds import BOUNDARY_KINDS, BoundaryKind, register_kind
from ddpinn.boundary.values import FUNCTIONS, parse_expression, parse_value
from ddpinn.boundary.conditions import (BoundaryCondition, Rows, apply_rows, condition_rows,
                                        exact_target, needs_gradient, parse_boundary)

__all__ = ["BOUNDARY_KINDS", "BoundaryKind", "register_kind", "FUNCTIONS", "parse_expression",
           "parse_value", "BoundaryCondition", "Rows", "apply_rows", "condition_rows",
           "exact_target", "needs_gradient", "parse_boundary"]

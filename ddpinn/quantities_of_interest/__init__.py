"""Quantities of interest of a run: forces on boundary pieces, probes and their differences
(``[output]`` fields ``forces``, ``probes``, ``probe_differences``).

:mod:`.spec` reads and checks the fields; :mod:`.compute` evaluates them from a trained
run's experts (collectively) or from any field given as a callable.
"""
from ddpinn.quantities_of_interest.spec import (Quantities, check_quantities,  # noqa: F401
                                                parse_quantities)

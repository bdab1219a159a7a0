"""Interface conditions (a registry of small pure functions) and the exchange of interface
values. Public for plugins (``docs/plugins.md``): :func:`condition`, :class:`Condition`,
:data:`QUANTITIES` (the interface-quantity registry), :func:`quantity`, :class:`Quantity`,
:func:`get_condition`, :class:`ConditionSet`."""
from ddpinn.interface.conditions import (CONDITIONS, DEFAULT_CONDITIONS, QUANTITIES, Condition,
                                         ConditionSet, condition, get_condition)
from ddpinn.interface.quantities import Quantity, quantity

__all__ = ["CONDITIONS", "DEFAULT_CONDITIONS", "QUANTITIES", "Condition", "ConditionSet",
           "Quantity", "condition", "get_condition", "quantity"]

"""Interface conditions (a registry of small pure functions) and the exchange of interface
values. Public for plugins (``docs/plugins.md``): :func:`condition`, :class:`Condition`,
:data:`QUANTITIES`, :func:`get_condition`, :class:`ConditionSet`."""
from ddpinn.interface.conditions import (CONDITIONS, DEFAULT_CONDITIONS, QUANTITIES, Condition,
                                         ConditionSet, condition, get_condition)

__all__ = ["CONDITIONS", "DEFAULT_CONDITIONS", "QUANTITIES", "Condition", "ConditionSet",
           "condition", "get_condition"]

from ddpinn.interface.conditions import (CONDITIONS, DEFAULT_CONDITIONS, ConditionSet,
                                         get_condition)

__all__ = ["CONDITIONS", "DEFAULT_CONDITIONS", "ConditionSet", "get_condition"]

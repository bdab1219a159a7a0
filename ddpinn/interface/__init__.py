from ddpinn.interface.conditions import CONDITIONS, DEFAULT_CONDITIONS, get_condition

__all__ = ["CONDITIONS", "DEFAULT_CONDITIONS", "get_condition"]

from ddpinn.nn.experts import BatchedMLP
from ddpinn.nn.derivatives import Fields

__all__ = ["BatchedMLP", "Fields"]

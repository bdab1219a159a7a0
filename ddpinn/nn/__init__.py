from ddpinn.nn.experts import BatchedMLP
from ddpinn.nn.derivatives import Fields
from ddpinn.nn.taylor import ENGINES, TaylorFields, make_fields

__all__ = ["BatchedMLP", "Fields", "TaylorFields", "make_fields", "ENGINES"]

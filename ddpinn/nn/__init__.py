from ddpinn.nn.experts import BatchedExperts, BatchedMLP
from ddpinn.nn.derivatives import Fields
from ddpinn.nn.taylor import ENGINES, TaylorFields, make_fields
from ddpinn.nn.architectures import ARCHITECTURES, ExpertSpec, register_architecture

__all__ = ["ARCHITECTURES", "BatchedExperts", "BatchedMLP", "ExpertSpec", "Fields",
           "TaylorFields", "make_fields", "register_architecture", "ENGINES"]

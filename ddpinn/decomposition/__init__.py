from ddpinn.decomposition.grid import Decomposition, Interface, Subdomain, decompose
from ddpinn.decomposition.partition import (assign_owners, owned_sids, partition,
                                            partition_weighted)
from ddpinn.decomposition.cut import cut_decomposition

__all__ = ["Decomposition", "Interface", "Subdomain", "decompose", "partition",
           "partition_weighted", "owned_sids", "assign_owners", "cut_decomposition"]

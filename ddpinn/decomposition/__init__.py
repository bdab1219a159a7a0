from ddpinn.decomposition.grid import Decomposition, Interface, Subdomain, decompose
<<<<<<< HEAD
from ddpinn.decomposition.partition import assign_owners, owned_sids, partition

__all__ = ["Decomposition", "Interface", "Subdomain", "decompose", "partition", "owned_sids",
           "assign_owners"]
=======
from ddpinn.decomposition.partition import partition, partition_weighted, owned_sids
from ddpinn.decomposition.cut import cut_decomposition

__all__ = ["Decomposition", "Interface", "Subdomain", "decompose", "partition",
           "partition_weighted", "owned_sids", "cut_decomposition"]
>>>>>>> geom

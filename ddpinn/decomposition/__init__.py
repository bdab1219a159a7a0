from ddpinn.decomposition.grid import Decomposition, Interface, Subdomain, decompose
from ddpinn.decomposition.partition import assign_owners, owned_sids, partition

__all__ = ["Decomposition", "Interface", "Subdomain", "decompose", "partition", "owned_sids",
           "assign_owners"]

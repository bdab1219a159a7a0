from ddpinn.decomposition.grid import Decomposition, Interface, Subdomain, decompose
from ddpinn.decomposition.partition import partition, owned_sids

__all__ = ["Decomposition", "Interface", "Subdomain", "decompose", "partition", "owned_sids"]

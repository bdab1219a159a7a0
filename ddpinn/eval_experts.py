"""The experts of one rank, loaded from a checkpoint, evaluated at global points
(``ddpinn eval``, :mod:`ddpinn.evaluation`).

Each point is evaluated by the expert of the subdomain that contains it
(:mod:`ddpinn.decomposition.locate`), in padded batches of the same width and chunks on any
rank count; rank 0 gathers the values.
"""
from __future__ import annotations

import numpy as np

from ddpinn.parallel.errors import DDPINNError


class RankExperts:
    """The experts of one rank, loaded from a checkpoint, for evaluation only.

    Subdomains go to ranks by the case's partition over ``min(comm.size, S)`` ranks; ranks
    beyond that hold no experts (but take part in every collective).

    Parameters
    ----------
    problem : Problem
    comm : Comm or SerialComm
    state : dict, a loaded checkpoint (:func:`ddpinn.io.checkpoint.load`)
    device : torch.device, default cpu
    dtype : str, "float64" or "float32"; default the case's
    """

    def __init__(self, problem, comm, state, device=None, dtype=None):
        import torch

        from ddpinn.decomposition import assign_owners, owned_sids
        from ddpinn.io import checkpoint
        from ddpinn.training.experts import DTYPES, make_experts
        from ddpinn.training.trainer import check_shapes

        d = problem.decomposition
        meta = state.get("meta") or {}
        if "grid" in meta and list(meta["grid"]) != list(d.grid):
            raise DDPINNError(f"the checkpoint has decomposition grid {list(meta['grid'])} "
                              f"but the run's config.toml has {list(d.grid)}")
        self.problem, self.comm = problem, comm
        self.device = device if device is not None else torch.device("cpu")
        self.dtype = DTYPES[dtype or problem.cfg.case.dtype]
        groups = min(comm.size, d.n_subdomains)
        self.owner = assign_owners(d, groups, problem.work)
        self.sids = owned_sids(self.owner, comm.rank) if comm.rank < groups else []
        self.model = None
        if self.sids:
            self.model = make_experts(problem, self.sids, self.dtype,
                                      self.device).to(self.device)
            stacked = checkpoint.gather_sids(state, self.sids)
            named = dict(self.model.named_parameters())
            check_shapes(stacked, {}, named, {})
            with torch.no_grad():
                for n, p in named.items():
                    p.copy_(stacked[f"param/{n}"])

    def value_names(self, derivatives: bool) -> list:
        """Names of the values :meth:`predict` returns: outputs, then ``u_x, u_y, ...``."""
        pde = self.problem.pde
        names = list(pde.outputs)
        if derivatives:
            names += [f"{o}_{a}" for o in pde.outputs for a in self.problem.box.names]
        return names

    def predict(self, points: np.ndarray, derivatives: bool = False) -> np.ndarray | None:
        """Collective. Values at global points, each by the expert that contains it.

        Every expert gets the same padded width and chunks on any rank count (they depend
        only on the points and the number of subdomains), so the values on 1 rank and on N
        agree to a few ulps, often bitwise (vectorised kernels may round the last bit
        differently when a rank holds a different number of experts).

        Parameters
        ----------
        points : ndarray, shape (P, dim), the same on every rank
        derivatives : bool, also the first derivatives (autograd)

        Returns
        -------
        ndarray, shape (P, n_values) on rank 0 (columns as :meth:`value_names`), None
        elsewhere
        """
        from ddpinn.decomposition.locate import locate

        n_values = len(self.value_names(derivatives))
        n_sub = self.problem.decomposition.n_subdomains
        sid_of = locate(points, self.problem.decomposition)
        mine = np.flatnonzero(np.isin(sid_of, self.sids))
        vals = np.empty((len(mine), n_values))
        if len(mine):
            fn = with_derivatives if derivatives else outputs
            width = int(np.bincount(sid_of).max())
            chunk = max(MIN_CHUNK, ROWS_PER_BATCH // n_sub)
            vals = expert_values(self.model, self.sids, points[mine], sid_of[mine], fn,
                                 n_values, self.dtype, self.device, width, chunk)
        parts = self.comm.gather((mine, vals))
        if self.comm.rank != 0:
            return None
        out = np.full((len(points), n_values), np.nan)
        for idx, v in parts:
            out[idx] = v
        return out


# Rows of one batch (experts x points) at most, when one rank holds every subdomain.
ROWS_PER_BATCH = 2 ** 18
MIN_CHUNK = 64


def expert_values(model, sids, points, sid_of, fn, n_values, dtype, device, width: int,
                  chunk: int) -> np.ndarray:
    """Evaluate local experts, each at its own points, in padded batches.

    Parameters
    ----------
    model : BatchedExperts of the experts ``sids`` (E of them)
    sids : list of int, length E
    points : ndarray, shape (P, dim)
    sid_of : ndarray of int, shape (P,), every entry in ``sids``
    fn : callable, (model, x (E, n, dim)) -> Tensor (E, n, n_values)
    n_values, dtype, device : columns of ``fn``, tensor type
    width : int, padded points per expert, at least the most any of them has
    chunk : int, points per expert in one batch: batches are (E, <= chunk, dim)

    Returns
    -------
    ndarray, shape (P, n_values), float64
    """
    import torch

    local = {s: e for e, s in enumerate(sids)}
    e_idx = np.array([local[int(s)] for s in sid_of], dtype=np.int64)
    counts = np.bincount(e_idx, minlength=len(sids))
    order = np.argsort(e_idx, kind="stable")
    slot = np.empty(len(points), dtype=np.int64)  # row of each point in its expert's batch
    slot[order] = np.concatenate([np.arange(c) for c in counts])
    out = np.empty((len(points), n_values))
    for start in range(0, width, chunk):
        n = min(chunk, width - start)
        take = np.flatnonzero((slot >= start) & (slot < start + n))
        if not len(take):
            continue
        # Padding rows repeat the first point; their values are dropped.
        x = np.repeat(points[:1], len(sids) * n, 0).reshape(len(sids), n, -1)
        x[e_idx[take], slot[take] - start] = points[take]
        xb = torch.as_tensor(x, dtype=dtype, device=device)
        vals = fn(model, xb).detach().double().cpu().numpy()
        out[take] = vals[e_idx[take], slot[take] - start]
    return out


def outputs(model, x):
    """The outputs alone: (E, n, dim) -> (E, n, m)."""
    import torch

    with torch.no_grad():
        return model(x)


def with_derivatives(model, x):
    """Outputs and their gradients: (E, n, dim) -> (E, n, m + m * dim), per output its
    derivatives along every axis. Points are independent, so the gradient of the sum over
    points is every point's own gradient."""
    import torch

    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        u = model(x)
        m = u.shape[-1]
        grads = [torch.autograd.grad(u[..., k].sum(), x, retain_graph=k < m - 1)[0]
                 for k in range(m)]
    return torch.cat([u.detach()] + [g.detach() for g in grads], dim=-1)

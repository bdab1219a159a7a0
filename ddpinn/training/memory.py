"""Peak memory of one rank, estimated before anything is built, and the check against the
memory a rank may use.

A rank's peak resident memory is, in this order of size for any non-trivial case:

1. the activations of one training step: the Taylor-mode (or autograd) forward pass keeps
   values, tangents and second-order channels of every hidden layer for every row of the
   padded point batch, shape (E, N, ., H), and the backward pass adds their gradients;
2. the optimizer: Adam's two moments, L-BFGS's history of (s, y) pairs;
3. the padded point batch (E, N, d + 1 + 4 m) and the experts' parameters and gradients;
4. the set-up transients (float64 draws of points and parameters before they are cast);
5. the interpreter with numpy, torch, mpi4py and torch's compiler stack (a constant).

Term 1 is measured, not guessed: :func:`step_bytes` runs the case's own network, PDE and
interface quantities on two tiny probe batches (2 experts, 16 and 48 rows) and records the
peak of the bytes held by live tensors during forward and backward; the difference gives the
bytes per (expert, row), which scale to the rank's E x N exactly because every activation is
(E, N, ...). The trailing value-only rows (boundary data, observations) are probed apart, by
the plain forward and backward pass the step gives them. The other terms are computed from the
shapes the code allocates.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ddpinn.training.optimizers import get_optimizer_class
from ddpinn.training.precision import largest_dtype  # the widest stage precision counts

MB = 2.0 ** 20

#: Resident memory of a rank before its set-up: Python, numpy, torch 2.13 (CPU build),
#: mpi4py and the ddpinn modules (237 MB), plus torch._dynamo, which the optimizers import
#: on their first step (+72 MB). Measured with ``VmRSS`` under ``mpiexec -n 2`` on Linux.
BASELINE_BYTES = 310 * MB

#: glibc serves allocations below its largest mmap threshold (32 MiB on 64-bit) from the
#: heap, where freed activations are reused only in part: the bytes of a step held in such
#: tensors peak higher than the bytes live at once (measured: 1.4 to 1.7 times for 4^3 and
#: 8^3 grids of 3D Poisson); larger tensors are mapped and unmapped and cost their size.
HEAP_THRESHOLD = 32 * MB
HEAP_FACTOR = 1.5

#: Set-up of more subdomains than this on one rank is logged phase by phase on rank 0.
LARGE_SETUP = 1024

#: Variable that overrides the memory limit of a rank, e.g. "2GB", "500MB" or bytes.
LIMIT_ENV = "DDPINN_MEMORY_LIMIT"

_PROBE_EXPERTS, _PROBE_ROWS = 2, (16, 48)
_probe_cache: dict = {}


# -- the training step, measured on probe batches -----------------------------------------
class _LiveBytes(TorchDispatchMode):
    """Bytes of the storages created inside the mode that are still alive, and their peak.

    Every tensor an op returns is counted once per storage (views share it) until the
    storage is freed; the backward pass runs under the same mode, so its gradients count.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.sizes = []  # bytes of every storage created
        self._storages = set()

    def _free(self, key, n):
        self._storages.discard(key)
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            # autograd's zero tensors (second derivatives of linear maps) own no memory
            if not isinstance(t, torch.Tensor) or t._is_zerotensor():
                continue
            storage = t.untyped_storage()
            key, n = storage.data_ptr(), storage.nbytes()
            if n == 0 or key in self._storages:
                continue
            self._storages.add(key)
            self.live += n
            self.peak = max(self.peak, self.live)
            self.sizes.append(n)
            weakref.finalize(storage, self._free, key, n)
        return out


def _probe(problem, n_rows: int, values_only: bool = False) -> tuple:
    """Peak live bytes and the sizes of all tensors of one loss evaluation and backward pass of
    ``_PROBE_EXPERTS`` experts at ``n_rows`` rows each, as :func:`local_loss` computes it:
    the PDE residual and every interface quantity of any stage, on all rows; with
    ``values_only``, the outputs alone (the plain forward pass of value-only rows)."""
    from ddpinn.interface.conditions import needed_quantities
    from ddpinn.nn.taylor import make_fields
    from ddpinn.training.experts import DTYPES, make_experts

    cfg, pde, decomp = problem.cfg, problem.pde, problem.decomposition
    dtype = DTYPES[largest_dtype(cfg)]
    sids = list(range(min(_PROBE_EXPERTS, decomp.n_subdomains)))
    model = make_experts(problem, sids, dtype)
    g = torch.Generator().manual_seed(0)
    lower = torch.as_tensor(decomp.lower[sids], dtype=dtype)[:, None]
    upper = torch.as_tensor(decomp.upper[sids], dtype=dtype)[:, None]
    x = lower + torch.rand(len(sids), n_rows, decomp.box.dim, generator=g,
                           dtype=dtype) * (upper - lower)
    names = {c for cs in [problem.conditions, *problem.stage_conditions] for c in cs.names}
    quantities = needed_quantities(sorted(names))
    m, d = pde.n_out, decomp.box.dim
    if values_only:
        with _LiveBytes() as live:
            model(x).pow(2).sum().backward()
        return live.peak, live.sizes
    with _LiveBytes() as live:
        x = x.requires_grad_(True)  # as local_loss: x always requires grad
        # The eager engine: a compiled sweep fuses products and holds no more than this.
        fields = make_fields(model, x, pde.axes, pde.outputs, cfg.network.derivatives)
        res = pde.residual(fields, pde.params)
        terms = [res, fields.u]
        if "dn" in quantities:
            terms += [fields.grad(k) for k in range(m)]
        if "dnn" in quantities or "dtt" in quantities:
            terms += [fields.d2(k, a, a) for k in range(m) for a in range(d)]
        if "flux" in quantities:
            terms.append(pde.flux(fields, pde.params))
        if "gres" in quantities:
            terms += [fields.grad_of(res[..., j]) for j in range(res.shape[-1])]
        loss = sum(t.pow(2).sum() for t in terms)
        del fields, res, terms
        loss.backward()
    return live.peak, live.sizes


def step_bytes(problem) -> dict:
    """Bytes of one training step's activations per (expert, row) and per expert.

    Returns
    -------
    dict with ``per_row`` (bytes per row of one expert), ``per_value_row`` (the same for a
    value-only row, :attr:`~ddpinn.training.points.PointBatch.value_rows`), ``per_expert``
    (bytes per expert that do not depend on the rows) and ``sizes_per_row`` (ndarray: the
    size of every tensor the step creates, per row of one expert). Cached per case (the probe takes milliseconds after torch's first
    use of a dispatch mode).
    """
    cfg = problem.cfg
    key = (repr(cfg.to_dict()), problem.decomposition.box.dim)
    if key not in _probe_cache:
        n1, n2 = _PROBE_ROWS
        e = min(_PROBE_EXPERTS, problem.decomposition.n_subdomains)
        p1, _ = _probe(problem, n1)
        p2, sizes = _probe(problem, n2)
        per_row = max(0.0, (p2 - p1) / (e * (n2 - n1)))
        v1, v2 = (_probe(problem, n, values_only=True)[0] for n in (n1, n2))
        _probe_cache[key] = {"per_row": per_row,
                             "per_value_row": max(0.0, (v2 - v1) / (e * (n2 - n1))),
                             "per_expert": max(0.0, (p1 - per_row * e * n1) / e),
                             "sizes_per_row": np.asarray(sizes, float) / (e * n2)}
    return _probe_cache[key]


# -- the estimate --------------------------------------------------------------------------
def experts_per_rank(n_subdomains: int, groups: int) -> int:
    """The largest number of subdomains a rank owns: the partition's blocks differ by at most
    one (:func:`ddpinn.decomposition.partition`)."""
    return -(-int(n_subdomains) // int(groups))


def _optimizer_bytes(stage, params: float, largest_param: float, n_params: tuple,
                     rows: float = 0.0, experts: int = 1) -> float:
    """What the optimizer of ``stage`` holds besides the parameters and their gradients.

    Passed to an adapter whose ``memory_bytes`` takes them: ``n_params`` (parameters on the
    rank, over all experts; a dense matrix over all parameters scales with both), ``rows``
    (residual rows of the rank's experts, E M, for least-squares optimizers) and
    ``experts`` (E)."""
    if stage.steps == 0:
        return 0.0
    cls = get_optimizer_class(stage.optimizer)
    accepted = inspect.signature(cls.memory_bytes).parameters
    extra = {k: v for k, v in (("n_params", n_params), ("rows", rows), ("experts", experts))
             if k in accepted}
    return cls.memory_bytes(stage, params, largest_param, **extra)


def residual_rows(problem, n_rows: int) -> int:
    """Residual rows per expert of the least-squares form (:mod:`ddpinn.training.lsq`), an
    upper bound: the blocks of its compact layout (q equations per interior point, m values
    per boundary and data row, the active conditions' widths per interface point and slot).
    With observations (their rows follow all others), q equations and 2 m values per row of
    the batch and every one of the 2 d faces an interface."""
    from ddpinn.interface.conditions import CONDITIONS
    from ddpinn.interface.quantities import values_per_point
    from ddpinn.training.lsq import problem_layout

    cfg, pde = problem.cfg, problem.pde
    d = problem.decomposition.box.dim
    names = {c for cs in [problem.conditions, *problem.stage_conditions] for c in cs.names}
    q = len(pde.equation_names())
    widths = sum(values_per_point(CONDITIONS[c].needs, pde.n_out, q, d) for c in names)
    lay = problem_layout(problem)
    interface = lay.slots * cfg.points.interface * widths
    if problem.shape_counts is not None:  # the blocks' own maxima over the subdomains
        entries = max(int(problem.shape_counts.entries.max()), 1)
        return lay.res_rows * q + (entries + lay.data_rows) * pde.n_out + interface
    obs = problem.observation_counts
    if obs is not None and int(np.max(obs)):
        return n_rows * (q + 2 * pde.n_out) + 2 * d * cfg.points.interface * widths
    # A box batch: the boundary block, then the data block from the same first row over the
    # boundary and data rows (lsq._box_blocks).
    data = (lay.bc_rows + lay.data_rows) * pde.n_out if cfg.points.data else 0
    return cfg.points.interior * q + lay.bc_rows * pde.n_out + data + interface


def estimate_rank_memory(cfg, problem, ranks: int) -> dict:
    """Estimated peak resident memory of the busiest rank of ``ranks``.

    Parameters
    ----------
    cfg : Config
    problem : Problem
    ranks : int
        Ranks of the run (``parallel.replicas`` ranks share each block of subdomains).

    Returns
    -------
    dict of bytes (floats) and counts: ``total`` (the peak), ``baseline``, ``step`` (the
    activations of one step), ``optimizer``, ``points`` (the padded batch), ``parameters``
    (with their gradients), ``setup`` (the set-up transient), ``experts`` and ``rows``
    (E and N of the rank's batch), ``phase`` ("training" or "set-up": where the peak is).
    """
    from ddpinn.training.points import batch_bytes, problem_rows, problem_value_rows
    from ddpinn.training.experts import DTYPES, make_experts

    d, pde = problem.decomposition, problem.pde
    replicas = cfg.parallel.replicas
    E = experts_per_rank(d.n_subdomains, max(1, ranks // replicas))
    N = problem_rows(problem, replicas)
    itemsize = torch.empty(0, dtype=DTYPES[largest_dtype(cfg)]).element_size()
    one = list(make_experts(problem, [0], DTYPES[largest_dtype(cfg)]).parameters())
    per_expert_params = float(sum(p.numel() for p in one) * itemsize)
    largest_param = E * max(p.numel() for p in one) * itemsize
    params = E * per_expert_params
    points = float(batch_bytes(E, N, d.box.dim, pde.n_out, itemsize))

    probe = step_bytes(problem)
    K = problem_value_rows(problem)  # of the N rows: a plain forward pass each
    step = E * ((N - K) * probe["per_row"] + K * probe["per_value_row"] + probe["per_expert"])
    # The share of the step's bytes in tensors small enough for the heap at this E x N.
    sizes = probe["sizes_per_row"] * E * (N - K)
    heap = float(sizes[sizes < HEAP_THRESHOLD].sum() / sizes.sum()) if sizes.size else 0.0
    step *= 1.0 + (HEAP_FACTOR - 1.0) * heap
    stages = [s for s in cfg.stages if s.steps > 0]
    n_params = (E * sum(p.numel() for p in one), d.n_subdomains * sum(p.numel() for p in one))
    rows = E * residual_rows(problem, N)
    optimizer = max((_optimizer_bytes(s, params, largest_param, n_params, rows, E)
                     for s in stages),
                    default=0.0)
    training = (step + optimizer + 2 * params) if stages else 0.0  # parameters + gradients

    # Set-up: experts are drawn per subdomain in float64 and stacked (float64, then cast);
    # points are drawn in float64 (the batch arrays and the interior draws) and cast.
    experts_setup = params * 2 * 8 / itemsize
    points_setup = batch_bytes(E, N, d.box.dim, pde.n_out, 8) + E * cfg.points.interior \
        * d.box.dim * 8 + points
    setup = params + max(experts_setup, points_setup)

    baseline = max(BASELINE_BYTES, float(_current_rss()))
    peak_training = training + points
    total = baseline + max(setup, peak_training)
    return {"total": total, "baseline": baseline, "step": step if stages else 0.0,
            "optimizer": optimizer, "points": points, "parameters": 2 * params,
            "setup": setup, "experts": E, "rows": N,
            "phase": "training" if peak_training >= setup else "set-up"}


def format_estimate(est: dict) -> str:
    """One line: the estimate and what it is made of, in MB."""
    parts = (("baseline", "interpreter and torch"), ("step", "activations of a step"),
             ("optimizer", "optimizer"), ("points", "points"),
             ("parameters", "parameters and gradients"))
    return (f"{est['total'] / MB:.0f} MB (peak in {est['phase']}; "
            f"{est['experts']} experts x {est['rows']} rows: "
            + ", ".join(f"{label} {est[k] / MB:.0f}" for k, label in parts)
            + f", set-up {est['setup'] / MB:.0f} MB)")


# -- the limit and the check ------------------------------------------------------------
_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "KB": 2 ** 10, "KIB": 2 ** 10, "M": 2 ** 20,
          "MB": 2 ** 20, "MIB": 2 ** 20, "G": 2 ** 30, "GB": 2 ** 30, "GIB": 2 ** 30,
          "T": 2 ** 40, "TB": 2 ** 40, "TIB": 2 ** 40}


def parse_bytes(text: str) -> int:
    """``"2GB"``, ``"500 MB"``, ``"1.5GiB"`` or ``"123456"`` -> bytes (K/M/G/T are powers of
    1024, as the memory lines of the log)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"{LIMIT_ENV}={text!r} is not a size: give bytes or a number with "
                         f"KB, MB, GB or TB, e.g. {LIMIT_ENV}=2GB")
    return int(float(match.group(1)) * _UNITS[unit])


def _current_rss() -> int:
    """Resident memory of this process now (``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def available_bytes() -> int:
    """Memory this node can still give: ``MemAvailable`` of ``/proc/meminfo``, else the
    free physical pages (``os.sysconf``)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_limit(local_size: int) -> tuple:
    """(bytes a rank may use, where that comes from): ``DDPINN_MEMORY_LIMIT`` when set, else
    this node's available memory shared by the ``local_size`` ranks on it."""
    if os.environ.get(LIMIT_ENV):
        return parse_bytes(os.environ[LIMIT_ENV]), f"{LIMIT_ENV}"
    avail = available_bytes()
    n = max(1, int(local_size))
    return avail // n, f"MemAvailable {avail / MB:.0f} MB of the node / {n} ranks on it"


def ranks_needed(cfg, problem, limit: float, start: int):
    """Fewest ranks (from ``start``, doubling, up to one subdomain per rank) whose estimate
    fits ``limit``, or None."""
    n_sub = problem.decomposition.n_subdomains * cfg.parallel.replicas
    r = start
    while r < n_sub:
        r = min(2 * r, n_sub)
        if estimate_rank_memory(cfg, problem, r)["total"] <= limit:
            return r
    return None


def check_memory(cfg, problem, comm) -> dict:
    """Collective. Refuse a run whose busiest rank would not fit in memory.

    Every rank computes the same estimate (:func:`estimate_rank_memory`); the limit is the
    smallest over ranks of :func:`memory_limit`. Raises :class:`DDPINNError` on every rank,
    with one message naming the estimate, the limit and what to change, before anything
    large is allocated or written. Returns the estimate.
    """
    from ddpinn.parallel.errors import DDPINNError

    error, est = None, None
    try:
        est = estimate_rank_memory(cfg, problem, comm.size)
        limit, source = memory_limit(getattr(comm, "local_size", 1))
    except ValueError as exc:  # a bad DDPINN_MEMORY_LIMIT
        error, limit, source = str(exc), math.inf, ""
    limits = comm.allgather((error, limit, source))
    errors = [e for e, _, _ in limits if e]
    if errors:
        raise DDPINNError(errors[0])
    limit, source = min((lim, src) for _, lim, src in limits)
    if est["total"] <= limit:
        return est
    more = ranks_needed(cfg, problem, limit, comm.size)
    hint = (f"use at least {more} ranks (on more nodes, or with more memory per rank), "
            if more else "use more nodes, ")
    raise DDPINNError(
        f"not enough memory: estimated peak per rank {format_estimate(est)} exceeds the "
        f"limit of {limit / MB:.0f} MB per rank ({source}); {hint}a coarser "
        f"'decomposition.grid' ({list(problem.decomposition.grid)}), fewer 'points' or a "
        f"narrower 'network'; set {LIMIT_ENV} (e.g. {LIMIT_ENV}=8GB) to change the limit")

"""PDE families: the interface every family implements, and the registry.

A PDE knows its outputs, its residual in terms of :class:`~ddpinn.nn.Fields`, its boundary
and initial data, and its exact solution or reference where one exists. Parameters are plain
numbers, except the unknowns of an inverse problem, which arrive as shared scalar tensors.

This is the plugin surface: ``docs/plugins.md`` documents every attribute and hook.
"""
from __future__ import annotations


import torch

PDES = {}


def register_pde(name: str):
    """Class decorator: make a PDE family available to case files as ``pde.name = name``."""
    def deco(cls):
        cls.name = name
        PDES[name] = cls
        return cls
    return deco


class PDE:
    """Base class of a PDE family.

    Subclasses set ``outputs``, ``space_dims``, ``time_dependent``, ``defaults`` and
    implement :meth:`residual`; families with a closed-form solution implement
    :meth:`exact`, others may name reference data (``reference``, :meth:`load_reference`).
    Everything here is called on every rank with the same arguments and must not
    communicate; see ``docs/plugins.md``.

    Parameters
    ----------
    space_dim : int
    params : dict
        Overrides of ``defaults``; unknown keys are an error.
    """

    name = ""
    outputs = ("u",)
    space_dims = (1, 2, 3)
    time_dependent = False
    defaults: dict = {}
    # Default domain (lower, upper, time interval or None) shown in docs and used by tests.
    domain = None
    # Names of the residual's equations, in the order of its last axis (per-equation weights
    # ``loss.residual = {name = w}``, docs). None: "r0", "r1", ... by the residual's width.
    equations: tuple | None = None
    # Reference data for families without a closed form: a file name (in the data directory)
    # or an absolute path; CSV/.dat/.txt (scattered points or a grid) or NetCDF (a grid).
    # See load_reference().
    reference = None
    # Outputs known only up to a constant (pressure): compared after removing the mean.
    gauge_outputs: tuple = ()
    # Groups of outputs also reported together, e.g. {"velocity": ("u", "v")}.
    error_groups: dict = {}
    # Flows in a periodic box: runs also report E(t), -dE/dt and 2 nu enstrophy of the
    # trained networks (outputs start with the velocity components; parameter "nu").
    energy_diagnostics = False
    # True for PDEs posed in a periodic box (no data on space faces).
    periodic_space = False

    def __init__(self, space_dim: int, params: dict | None = None):
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise ValueError(f"field 'pde.params.{unknown[0]}' is not a parameter of PDE "
                             f"{self.name!r}; allowed: {allowed}")
        if space_dim not in self.space_dims:
            raise ValueError(f"PDE {self.name!r} is defined in {self.space_dims} space "
                             f"dimensions, but the domain has {space_dim}")
        self.space_dim = space_dim
        self.params = {**self.defaults, **params}
        self._equation_names = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass is its own family: it does not inherit its base's registered name (a
        # plugin deriving from a shipped family is not that family in logs and outputs).
        if "name" not in cls.__dict__:
            cls.name = f"{cls.__module__}:{cls.__qualname__}"

    @property
    def n_out(self) -> int:
        return len(self.outputs)

    @property
    def axes(self) -> tuple:
        return ("x", "y", "z")[: self.space_dim] + (("t",) if self.time_dependent else ())

    @property
    def has_exact(self) -> bool:
        return type(self).exact is not PDE.exact

    @property
    def has_computed_reference(self) -> bool:
        return type(self).computed_reference is not PDE.computed_reference

    @property
    def has_reference(self) -> bool:
        """True when the family names reference data or overrides :meth:`load_reference`."""
        return bool(self.reference) or type(self).load_reference is not PDE.load_reference

    def equation_names(self) -> tuple:
        """Names of the residual's equations: ``equations`` when the family sets it, else
        ``("r0", "r1", ...)``, as many as the residual has (found by evaluating it once on
        a few probe points of a smooth field; no communication)."""
        if self.equations is not None:
            return tuple(self.equations)
        if self._equation_names is None:
            self._equation_names = tuple(f"r{i}" for i in range(self._probe_equations()))
        return self._equation_names

    def _probe_equations(self) -> int:
        from ddpinn.nn.derivatives import Fields

        d = len(self.axes)
        gen = torch.Generator().manual_seed(0)
        x = (0.2 + 0.6 * torch.rand(1, 4, d, generator=gen, dtype=torch.float64))
        x.requires_grad_(True)
        mix = torch.rand(d, self.n_out, generator=gen, dtype=torch.float64)
        u = torch.sin(x @ mix + 0.3)  # (1, 4, n_out), smooth, every derivative nonzero
        with torch.enable_grad():
            res = self.residual(Fields(x, u, self.axes, self.outputs), dict(self.params))
        if res.dim() != 3 or tuple(res.shape[:2]) != (1, 4):
            raise ValueError(f"PDE {self.name!r}: residual() must return (E, N, n_equations), "
                             f"got shape {tuple(res.shape)} for points (1, 4, {d})")
        return int(res.shape[-1])

    def residual(self, f, p: dict) -> torch.Tensor:
        """PDE residual at the points of ``f``: (E, N, n_equations).

        ``p`` maps parameter names to numbers, or to scalar tensors for inverse unknowns.
        """
        raise NotImplementedError

    def exact(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Exact solution, x: (..., d) -> (..., n_out), written with torch ops so that
        tests can differentiate it."""
        raise NotImplementedError(f"PDE {self.name!r} has no exact solution")

    def computed_reference(self, axes, p: dict, cache=None, resolution: int = 0):
        """Reference computed by a solver ddpinn ships, for families without a closed form.

        Parameters
        ----------
        axes : list of 1D ndarray, one per axis (space axes, then t)
        cache : path or None -- a file where an expensive reference may be kept and reused
        resolution : int -- grid points per axis of the solver (0: the family's choice)

        Returns
        -------
        values : ndarray (len(axes[0]), ..., n_out)
        source : str -- what the reference is, for the run's records
        """
        raise NotImplementedError(f"PDE {self.name!r} computes no reference")

    def load_reference(self):
        """Reference data to compare with: a :class:`~ddpinn.io.reference.Reference` or None.

        Default: read the file named by ``reference`` (:func:`ddpinn.io.reference.load_file`:
        a name in the data directory or an absolute path; CSV/.dat/.txt or NetCDF). Override
        to build a Reference any other way. Called on every rank at set-up (collective
        agreement: an exception on any rank stops the run with one message, exit 2). Return
        None when there is no reference (the run trains and reports no errors).
        """
        if not self.reference:
            return None
        from ddpinn.io.reference import load_file

        return load_file(self.reference, self)

    def boundary_data(self, x: torch.Tensor, axis: int, side: int, p: dict):
        """Dirichlet data on one face of the global domain (the initial face along t).

        Returns
        -------
        target : Tensor, shape (n, n_out)
        mask : list of bool, length n_out -- which outputs are constrained on this face
        """
        return self.exact(x, p), [True] * self.n_out

    def flux(self, f, p: dict) -> torch.Tensor:
        """Flux vector of each output, (E, N, n_out, d), used by flux continuity.

        Default: the diffusive flux ``grad u`` in space and ``u`` itself along time.
        """
        cols = []
        for a, name in enumerate(self.axes):
            cols.append(torch.stack([f.value(k) if name == "t" else f.d(k, a)
                                     for k in range(self.n_out)], dim=-1))
        return torch.stack(cols, dim=-1)

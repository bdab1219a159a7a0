"""METALIC: learn which interface conditions work best, as a function of PDE parameters.

Li, Penwarden, Xu, Tillinghast, Narayan, Kirby, Zhe, "Meta Learning of Interface Conditions
for Multi-Domain Physics-Informed Neural Networks", ICML 2023. A contextual bandit whose arms
are sets of interface conditions (binary masks over an ordered candidate list) and whose
contexts are PDE parameters; a Gaussian-process reward model (scikit-learn) over (context, arm)
picks the arm of each training run by UCB or Thompson sampling; a two-stage variant picks one
arm for the Adam stage and one for the L-BFGS stage.

Modules: :mod:`arms`, :mod:`contexts`, :mod:`model` (GP), :mod:`bandit` (decisions),
:mod:`campaign` (campaign files), :mod:`state` (the locked state file), :mod:`reward`,
:mod:`runner` (workers), :mod:`suggest`, :mod:`report`, :mod:`synthetic` (reward functions
with a known best arm, for ``[reward] source = "synthetic"``), :mod:`commands` and
:mod:`cli` (the CLI). The Cole-Hopf Burgers reference is :mod:`ddpinn.references.burgers`.

Nothing here is imported by ``ddpinn run`` unless a case says ``conditions = "metalic:PATH"``;
scikit-learn is needed only then: this package registers that condition source (see
:func:`ddpinn.interface.conditions.register_condition_source`) when imported.
"""
from ddpinn.interface.conditions import register_condition_source



def resolve_conditions(path, pde_name: str, params: dict):
    """Conditions for ``interface.conditions = "metalic:PATH"``: the campaign's best arm by
    posterior mean at ``params`` (see :func:`ddpinn.metalic.suggest.resolve_conditions`)."""
    from ddpinn.metalic.suggest import resolve_conditions as _resolve

    return _resolve(path, pde_name, params)


register_condition_source("metalic", resolve_conditions)


__all__ = ["resolve_conditions"]

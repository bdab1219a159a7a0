"""Arms of the METALIC bandit: sets of interface conditions encoded as binary masks.

An arm is a set of interface conditions. Given an ordered list of ``candidates`` (by default
every registered condition, in registry order), an arm is the binary mask whose bit ``i`` says
whether ``candidates[i]`` is active, written as a string such as ``"110000000"`` (METALIC's
9-bit masks). The reward model sees an arm as the vector of its mask bits restricted to the
bits that differ between arms (a bit that every arm shares carries no information).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from ddpinn.interface.conditions import CONDITIONS


class ArmError(ValueError):
    """A bad arm specification; the message names the campaign field."""


class ArmSpace:
    """Ordered candidates and the list of allowed arms.

    Parameters
    ----------
    candidates : sequence of str
        Interface-condition names, in mask order. Each must be registered.
    arms : sequence of sequences of str, optional
        The allowed arms (condition sets). Default: every non-empty subset of the candidates
        with at most ``max_size`` members.
    max_size : int, optional
        Largest arm when ``arms`` is not given (default: all candidates).
    """

    def __init__(self, candidates=None, arms=None, max_size=None):
        candidates = list(CONDITIONS) if candidates is None else list(candidates)
        if not candidates:
            raise ArmError("field 'arms.candidates' is empty; name at least one condition")
        for c in candidates:
            if c not in CONDITIONS:
                raise ArmError(f"field 'arms.candidates' names {c!r}, which is not an interface "
                               f"condition; choose from: {', '.join(CONDITIONS)}")
        if len(set(candidates)) != len(candidates):
            raise ArmError(f"field 'arms.candidates' = {candidates!r} repeats a condition")
        self.candidates = tuple(candidates)
        if arms is None:
            k = len(candidates) if max_size is None else int(max_size)
            if k < 1:
                raise ArmError(f"field 'arms.max_size' = {max_size!r} must be >= 1")
            arms = [c for n in range(1, min(k, len(candidates)) + 1)
                    for c in combinations(candidates, n)]
        masks = []
        for i, arm in enumerate(arms):
            if isinstance(arm, str):
                arm = self._from_mask_string(arm, f"arms.list[{i}]")
            arm = list(arm)
            if not arm:
                raise ArmError(f"field 'arms.list[{i}]' is an empty set of conditions")
            for c in arm:
                if c not in self.candidates:
                    raise ArmError(f"field 'arms.list[{i}]' names {c!r}, which is not among "
                                   f"'arms.candidates': {', '.join(self.candidates)}")
            mask = self.mask_of(arm)
            if mask in masks:
                raise ArmError(f"field 'arms.list[{i}]' = {arm!r} repeats an earlier arm")
            masks.append(mask)
        if not masks:
            raise ArmError("the campaign has no arms")
        self.masks = tuple(masks)
        bits = np.array([[ch == "1" for ch in m] for m in masks], dtype=float)
        # Bits that vary between arms: the reward model's arm features.
        self.active_bits = tuple(int(j) for j in np.flatnonzero(bits.min(0) != bits.max(0)))
        self._bits = bits

    # -- encoding ------------------------------------------------------------------------
    def _from_mask_string(self, text: str, where: str) -> list:
        if len(text) != len(self.candidates) or set(text) - {"0", "1"}:
            raise ArmError(f"field {where!r} = {text!r} must be a mask of "
                           f"{len(self.candidates)} bits (0/1), one per candidate")
        return [c for c, b in zip(self.candidates, text) if b == "1"]

    def mask_of(self, conditions) -> str:
        """Mask string of a set of conditions (order does not matter)."""
        s = set(conditions)
        return "".join("1" if c in s else "0" for c in self.candidates)

    def conditions(self, arm: int) -> list:
        """Condition names of arm ``arm``, in candidate order."""
        return [c for c, b in zip(self.candidates, self.masks[arm]) if b == "1"]

    def index(self, arm) -> int:
        """Arm index from an index, a mask string or a list of condition names."""
        if isinstance(arm, (int, np.integer)):
            if not 0 <= arm < len(self.masks):
                raise ArmError(f"arm {arm} out of range 0..{len(self.masks) - 1}")
            return int(arm)
        mask = arm if isinstance(arm, str) and set(arm) <= {"0", "1"} and \
            len(arm) == len(self.candidates) else self.mask_of(arm)
        try:
            return self.masks.index(mask)
        except ValueError:
            raise ArmError(f"{arm!r} is not an arm of this campaign") from None

    def features(self, arms=None) -> np.ndarray:
        """Reward-model features of arms: (n_arms, n_active_bits) of 0/1 floats."""
        idx = np.arange(len(self.masks)) if arms is None else np.asarray(arms, dtype=int)
        return self._bits[np.ix_(idx, self.active_bits)]

    @property
    def n_features(self) -> int:
        return len(self.active_bits)

    def __len__(self) -> int:
        return len(self.masks)

    def label(self, arm: int) -> str:
        """Short human label: ``mask (cond+cond)``."""
        return f"{self.masks[arm]} ({'+'.join(abbreviate(c) for c in self.conditions(arm))})"

    def to_dict(self) -> dict:
        return {"candidates": list(self.candidates), "masks": list(self.masks)}

    @classmethod
    def from_dict(cls, d: dict) -> "ArmSpace":
        return cls(d["candidates"], d["masks"])


_ABBREV = {
    "solution_continuity": "u", "average_solution": "avg", "interface_residual": "ires",
    "residual_continuity": "rc", "flux_continuity": "flux",
    "normal_derivative_continuity": "dn", "second_normal_derivative_continuity": "dnn",
    "tangential_second_derivative_continuity": "dtt", "residual_gradient": "gres",
}


def abbreviate(name: str) -> str:
    """Short name of a condition for tables and plot labels."""
    return _ABBREV.get(name, name)

"""Arms of the METALIC bandit: sets of interface conditions encoded as binary masks.

An arm is a set of interface conditions. Given an ordered list of ``candidates`` (by default
every registered condition, in registry order), an arm is the binary mask whose bit ``i`` says
whether ``candidates[i]`` is active, written as a string such as ``"110000000"`` (METALIC's
9-bit masks). The reward model sees an arm as the vector of its mask bits restricted to the
bits that differ between arms (a bit that every arm shares carries no information).

With separate sets for space and time interfaces (``arms.separate = true``), an arm is a pair
of sets and its mask the space bits followed by the time bits.
"""
from __future__ import annotations

from itertools import combinations, product

import numpy as np

from ddpinn.interface.conditions import CONDITIONS, KINDS


class ArmError(ValueError):
    """A bad arm specification; the message names the campaign field."""


class ArmSpace:
    """Ordered candidates and the list of allowed arms.

    Parameters
    ----------
    candidates : sequence of str
        Interface-condition names, in mask order. Each must be registered.
    arms : sequence, optional
        The allowed arms: lists of condition names (or tables {space = [...], time = [...]}
        with ``kinds``), or mask strings. Default: every non-empty subset of the candidates with
        at most ``max_size`` members (with ``kinds``: every pair of such subsets).
    max_size : int, optional
        Largest set when ``arms`` is not given (default: all candidates).
    kinds : sequence of str, optional
        ``("space", "time")``: an arm gives space and time interfaces separate sets; its mask
        is the space bits followed by the time bits. A plain list in ``arms`` then means the
        same set on both kinds.
    """

    def __init__(self, candidates=None, arms=None, max_size=None, kinds=None):
        candidates = [n for n, c in CONDITIONS.items() if c.candidate] if candidates is None \
            else list(candidates)
        if not candidates:
            raise ArmError("field 'arms.candidates' is empty; name at least one condition")
        for c in candidates:
            if c not in CONDITIONS:
                raise ArmError(f"field 'arms.candidates' names {c!r}, which is not an interface "
                               f"condition; choose from: {', '.join(CONDITIONS)}")
        if len(set(candidates)) != len(candidates):
            raise ArmError(f"field 'arms.candidates' = {candidates!r} repeats a condition")
        self.candidates = tuple(candidates)
        self.kinds = tuple(kinds) if kinds else None
        if self.kinds is not None and self.kinds != KINDS:
            raise ArmError(f"arm kinds {kinds!r}: separate sets are given for {KINDS!r}")
        if arms is None:
            k = len(candidates) if max_size is None else int(max_size)
            if k < 1:
                raise ArmError(f"field 'arms.max_size' = {max_size!r} must be >= 1")
            subsets = [list(c) for n in range(1, min(k, len(candidates)) + 1)
                       for c in combinations(candidates, n)]
            arms = subsets if self.kinds is None else \
                [dict(zip(KINDS, pair)) for pair in product(subsets, repeat=len(KINDS))]
        masks = []
        for i, arm in enumerate(arms):
            where = f"arms.list[{i}]"
            if isinstance(arm, str):
                mask = self._check_mask(arm, where)
            else:
                mask = self.mask_of(self._check_sets(arm, where))
            if mask in masks:
                raise ArmError(f"field {where!r} = {arm!r} repeats an earlier arm")
            masks.append(mask)
        if not masks:
            raise ArmError("the campaign has no arms")
        self.masks = tuple(masks)
        bits = np.array([[ch == "1" for ch in m] for m in masks], dtype=float)
        # Bits that vary between arms: the reward model's arm features.
        self.active_bits = tuple(int(j) for j in np.flatnonzero(bits.min(0) != bits.max(0)))
        self._bits = bits

    # -- encoding ------------------------------------------------------------------------
    @property
    def n_bits(self) -> int:
        return len(self.candidates) * (len(self.kinds) if self.kinds else 1)

    def _check_mask(self, text: str, where: str) -> str:
        if len(text) != self.n_bits or set(text) - {"0", "1"}:
            per = f", {len(self.candidates)} per interface kind ({', '.join(self.kinds)})" \
                if self.kinds else ""
            raise ArmError(f"field {where!r} = {text!r} must be a mask of {self.n_bits} bits "
                           f"(0/1), one per candidate{per}")
        c = len(self.candidates)
        if any("1" not in text[j:j + c] for j in range(0, len(text), c)):
            raise ArmError(f"field {where!r} = {text!r} is an empty set of conditions")
        return text

    def _check_sets(self, arm, where: str) -> dict:
        """An arm as {kind: [names]} (kind "all" without separate kinds), checked."""
        if isinstance(arm, dict):
            if self.kinds is None:
                raise ArmError(f"field {where!r} = {arm!r} gives separate sets per interface "
                               f"kind; set 'arms.separate = true' to learn them apart")
            if set(arm) != set(KINDS):
                raise ArmError(f"field {where!r} = {arm!r} must have exactly the keys "
                               f"{', '.join(KINDS)}")
            sets = {k: arm[k] for k in KINDS}
        else:
            sets = {k: arm for k in (self.kinds or ("all",))}
        for k, names in sets.items():
            at = where if k == "all" or not isinstance(arm, dict) else f"{where}.{k}"
            if isinstance(names, str) or not isinstance(names, (list, tuple)):
                raise ArmError(f"field {at!r} = {names!r} must be a list of condition names")
            if not names:
                raise ArmError(f"field {at!r} is an empty set of conditions")
            for c in names:
                if c not in self.candidates:
                    raise ArmError(f"field {at!r} names {c!r}, which is not among "
                                   f"'arms.candidates': {', '.join(self.candidates)}")
        return sets

    def mask_of(self, conditions) -> str:
        """Mask string of a set of conditions (order does not matter): a list, or with kinds
        a {space, time} table (a list then stands for the same set on both kinds)."""
        if isinstance(conditions, dict) and "all" in conditions:
            conditions = conditions["all"]
        if self.kinds is None:
            s = set(conditions)
            return "".join("1" if c in s else "0" for c in self.candidates)
        if not isinstance(conditions, dict):
            conditions = {k: conditions for k in self.kinds}
        return "".join("1" if c in set(conditions[k]) else "0"
                       for k in self.kinds for c in self.candidates)

    def conditions(self, arm: int):
        """Condition names of arm ``arm`` in candidate order: a list, or with kinds a
        {space, time} table of lists (the value of a case's ``interface.conditions``)."""
        mask = self.masks[arm]
        c = len(self.candidates)
        if self.kinds is None:
            return [n for n, b in zip(self.candidates, mask) if b == "1"]
        return {k: [n for n, b in zip(self.candidates, mask[j * c:(j + 1) * c]) if b == "1"]
                for j, k in enumerate(self.kinds)}

    def condition_names(self, arm: int) -> list:
        """Every condition arm ``arm`` activates somewhere, in candidate order."""
        sets = self.conditions(arm)
        if isinstance(sets, list):
            return sets
        return [n for n in self.candidates if any(n in v for v in sets.values())]

    def describe(self, arm: int) -> str:
        """The arm's conditions in words, e.g. ``space: a, b; time: c``."""
        sets = self.conditions(arm)
        if isinstance(sets, list):
            return ", ".join(sets)
        return "; ".join(f"{k}: {', '.join(v)}" for k, v in sets.items())

    def index(self, arm) -> int:
        """Arm index from an index, a mask string or condition names (a list or a table)."""
        if isinstance(arm, (int, np.integer)):
            if not 0 <= arm < len(self.masks):
                raise ArmError(f"arm {arm} out of range 0..{len(self.masks) - 1}")
            return int(arm)
        mask = arm if isinstance(arm, str) and set(arm) <= {"0", "1"} and \
            len(arm) == self.n_bits else self.mask_of(arm)
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
        """Short human label: ``mask (cond+cond)``, with kinds ``mask (s: ... | t: ...)``."""
        sets = self.conditions(arm)
        if isinstance(sets, list):
            return f"{self.masks[arm]} ({'+'.join(abbreviate(c) for c in sets)})"
        text = " | ".join(f"{k[0]}: {'+'.join(abbreviate(c) for c in v)}" for k, v in sets.items())
        return f"{self.masks[arm]} ({text})"

    def to_dict(self) -> dict:
        d = {"candidates": list(self.candidates), "masks": list(self.masks)}
        if self.kinds:
            d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ArmSpace":
        return cls(d["candidates"], d["masks"], kinds=d.get("kinds"))


_ABBREV = {
    "solution_continuity": "u", "average_solution": "avg", "interface_residual": "ires",
    "residual_continuity": "rc", "flux_continuity": "flux",
    "normal_derivative_continuity": "dn", "second_normal_derivative_continuity": "dnn",
    "tangential_second_derivative_continuity": "dtt", "residual_gradient": "gres",
}


def abbreviate(name: str) -> str:
    """Short name of a condition for tables and plot labels."""
    return _ABBREV.get(name, name)

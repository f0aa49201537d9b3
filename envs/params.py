"""Parameter ranges with disjoint in-distribution ("id") and out-of-distribution ("ood") supports.

A scene declares its randomness as a dict of these ranges; the base env samples them at reset
from ``self.np_random`` for the requested split. Evals then score generalization on ``ood``
episodes whose parameters were never seen in training, which only means something if the two
supports cannot overlap, so both classes check it at construction.

A range without ``ood`` is *shared*: it samples from the same support in both splits (layout
jitter, start positions: things we vary but do not test generalization on).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

SPLITS = ("id", "ood")


def check_split(split: str) -> str:
    """Return ``split`` if it names a split, else raise with the allowed names."""
    if not isinstance(split, str) or split not in SPLITS:  # a numpy array would compare elementwise
        raise ValueError(f"split {reprlib.repr(split)} is not one of {SPLITS}: pass split='id' or split='ood'")
    return split


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    # Half-open [lo, hi): touching endpoints do not overlap, because numpy's uniform excludes hi.
    return a[0] < b[1] and b[0] < a[1]


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from one interval (id) or a union of intervals (ood).

    ``Uniform(id=(0.1, 0.15), ood=[(0.06, 0.1), (0.15, 0.2)])``: ood intervals are picked with
    probability proportional to their length, so the ood distribution is uniform on their union.
    ``per_object=True`` draws one value per object (see ``ParamSpace``).
    """

    id: tuple[float, float]
    ood: Sequence[tuple[float, float]] | None = None
    per_object: bool = False

    def __post_init__(self) -> None:
        for lo, hi in [self.id, *(self.ood or [])]:
            if not lo < hi:
                raise ValueError(f"interval ({lo}, {hi}) is empty: write intervals as (lo, hi) with lo < hi")
        for interval in self.ood or []:
            if _overlaps(self.id, interval):
                raise ValueError(
                    f"ood interval {interval} overlaps id interval {self.id}: "
                    "id and ood supports must be disjoint so ood episodes are truly unseen"
                )

    def intervals(self, split: str) -> list[tuple[float, float]]:
        """The support of ``split`` as a list of half-open intervals."""
        if check_split(split) == "ood" and self.ood is not None:
            return [tuple(i) for i in self.ood]
        return [tuple(self.id)]

    def sample(self, rng: np.random.Generator, split: str) -> float:
        intervals = self.intervals(split)
        lengths = np.array([hi - lo for lo, hi in intervals])
        lo, hi = intervals[int(rng.choice(len(intervals), p=lengths / lengths.sum()))]
        return float(rng.uniform(lo, hi))

    def contains(self, value: float, split: str) -> bool:
        return any(lo <= value < hi for lo, hi in self.intervals(split))


@dataclass(frozen=True)
class Choice:
    """A value drawn uniformly from a finite set: ``Choice(id=["red", "green"], ood=["cyan"])``.

    With ``per_object=True`` and ``distinct=True`` objects get different values (colors that a
    color-segmenting tracker can tell apart), so the split needs at least as many values as objects.
    """

    id: Sequence[Any]
    ood: Sequence[Any] | None = None
    per_object: bool = False
    distinct: bool = False

    def __post_init__(self) -> None:
        if len(self.id) == 0 or (self.ood is not None and len(self.ood) == 0):
            raise ValueError(f"Choice(id={self.id}, ood={self.ood}) has an empty split: give each split values")
        shared = set(self.id) & set(self.ood or [])
        if shared:
            raise ValueError(
                f"values {sorted(shared)} are in both id and ood: "
                "id and ood supports must be disjoint so ood episodes are truly unseen"
            )

    def values(self, split: str) -> list[Any]:
        if check_split(split) == "ood" and self.ood is not None:
            return list(self.ood)
        return list(self.id)

    def sample(self, rng: np.random.Generator, split: str) -> Any:
        values = self.values(split)
        return _plain(values[int(rng.integers(len(values)))])

    def sample_distinct(self, rng: np.random.Generator, split: str, n: int) -> list[Any]:
        values = self.values(split)
        if n > len(values):
            raise ValueError(
                f"cannot draw {n} distinct values from {values} ({split} split): "
                "add values to the Choice or lower the object count"
            )
        return [_plain(values[int(i)]) for i in rng.permutation(len(values))[:n]]

    def contains(self, value: Any, split: str) -> bool:
        return value in self.values(split)


Param = Uniform | Choice


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so sampled params serialize to JSON as they are."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class ParamSpace:
    """Samples a scene's parameter dict; ``count_key`` names the param that sets the object count.

    Params are drawn in declaration order with the count first, so a seed always yields the
    same dict; per-object params become lists of length ``count``.
    """

    params: dict[str, Param] = field(default_factory=dict)
    count_key: str = "count"

    def sample(self, rng: np.random.Generator, split: str) -> dict[str, Any]:
        check_split(split)
        out: dict[str, Any] = {}
        count = 1
        if self.count_key in self.params:
            count = int(self.params[self.count_key].sample(rng, split))
            out[self.count_key] = count
        for name, param in self.params.items():
            if name == self.count_key:
                continue
            if not param.per_object:
                out[name] = param.sample(rng, split)
            elif isinstance(param, Choice) and param.distinct:
                out[name] = param.sample_distinct(rng, split, count)
            else:
                out[name] = [param.sample(rng, split) for _ in range(count)]
        return out

    def max_count(self) -> int:
        """The largest object count either split can draw (1 without a count param)."""
        param = self.params.get(self.count_key)
        if param is None:
            return 1
        assert isinstance(param, Choice), f"count param {self.count_key!r} must be a Choice, got {param}"
        return int(max([*param.id, *(param.ood or [])]))


@dataclass(frozen=True)
class HeldOutPairs:
    """Combinations of two per-object ``Choice`` params held out of training: unseen combinations of seen values.

    ``HeldOutPairs(("color", "shape"), {("red", "cylinder"), ...})`` samples every value from the
    id supports and splits by combination instead: in ``"id"`` no object has a held-out pair (a
    red cylinder is never seen, though red and cylinders are); in ``"ood"`` object 0 has one and
    the others none. Draws are rejection-sampled from ``rng``, so a seed still yields one dict.
    """

    keys: tuple[str, str]
    pairs: frozenset[tuple[Any, Any]]
    max_tries: int = 1000

    def check(self, space: ParamSpace) -> None:
        """Raise unless both keys are per-object Choices whose id values hold every pair."""
        for key, index in zip(self.keys, (0, 1)):
            param = space.params.get(key)
            if not (isinstance(param, Choice) and param.per_object):
                raise ValueError(f"held-out pairs need {key!r} to be a per-object Choice, got {param}")
            unknown = sorted({pair[index] for pair in self.pairs} - set(param.id))
            if unknown:
                raise ValueError(f"held-out {key} values {unknown} are not among its id values {list(param.id)}")

    def held(self, params: dict[str, Any]) -> list[bool]:
        """Per object: is its pair held out?"""
        a, b = self.keys
        return [(x, y) in self.pairs for x, y in zip(params[a], params[b])]

    def sample(self, space: ParamSpace, rng: np.random.Generator, split: str) -> dict[str, Any]:
        check_split(split)
        for _ in range(self.max_tries):
            params = space.sample(rng, "id")
            held = self.held(params)
            if (split == "id" and not any(held)) or (split == "ood" and held[0] and not any(held[1:])):
                return params
        raise RuntimeError(
            f"no {split} draw in {self.max_tries} tries keeps the held-out pairs {sorted(self.pairs)} where the "
            "split wants them: hold out fewer pairs"
        )

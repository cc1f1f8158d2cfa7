"""The featurizer's spec: every feature's name, position and generic bounds, in one place.

The observation is :data:`PER_ARM_FEATURES` (one block of ``A`` columns each, in order),
then :data:`QUERY_FEATURES` (one column each, in order); :class:`FeatureLayout` turns the
spec into named positions for ``A`` arms, which everything that reads or bounds a feature
uses. The meaning of each feature is documented in :func:`allocator.featurizer.featurize`.

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "LOG_LAMBDA_FLOOR",
    "PER_ARM_FEATURES",
    "QUERY_FEATURES",
    "Feature",
    "FeatureLayout",
    "feature_layout",
]

#: The floor under lambda in the ``log_lambda`` feature (lambda may be 0).
LOG_LAMBDA_FLOOR = 1e-6


@dataclass(frozen=True)
class Feature:
    """One feature of the spec.

    Adding a feature is one :class:`Feature` in :data:`PER_ARM_FEATURES` or
    :data:`QUERY_FEATURES`, its formula in the featurizer (both paths) and its test;
    positions, widths, names and bounds follow.

    Attributes:
        name: its name (per-arm features are listed as ``name[arm]``).
        low: its generic lower bound (``-inf`` where unbounded).
        high: its generic upper bound (``inf`` where unbounded).
    """

    name: str
    low: float = 0.0
    high: float = 1.0

    @property
    def attribute(self) -> str:
        """The :class:`FeatureLayout` attribute that holds its position."""
        return f"{self.name}_" if keyword.iskeyword(self.name) else self.name


#: Features with one column per arm, as blocks in this order.
PER_ARM_FEATURES = (
    Feature("prior"),
    Feature("log1p_samples", high=math.inf),
)

#: Features with one column, in this order after the per-arm blocks.
QUERY_FEATURES = (
    Feature("log1p_drawn", high=math.inf),
    Feature("leader_share"),
    Feature("margin"),
    Feature("answer_entropy"),
    Feature("distinct_ratio"),
    Feature("no_answer_share"),
    Feature("has_verified"),
    Feature("best_verified_score", low=-math.inf, high=math.inf),
    Feature("log1p_refines", high=math.inf),
    Feature("cost_spent", high=math.inf),
    Feature("lambda", high=math.inf),
    Feature("log_lambda", low=math.log(LOG_LAMBDA_FLOOR), high=math.inf),
    Feature("leader_posterior"),
)


class FeatureLayout:
    """Named positions of the features for ``n_arms`` arms (get one with
    :func:`feature_layout`, cached).

    Each per-arm feature's name is an attribute holding its block's ``slice``; each
    query feature's name (:attr:`Feature.attribute`) an attribute holding its column:
    ``layout.prior`` is the slice of the prior block, ``layout.leader_share`` the column
    of the leader's share (``lambda_`` for ``lambda``, a Python keyword). Everything that
    reads or bounds a feature uses these names: the featurizer's formulas
    (:func:`allocator.featurizer.featurize` and
    :meth:`~allocator.featurizer.QueryState.feature_values`), its names
    (:func:`~allocator.featurizer.feature_names`) and generic bounds
    (:func:`~allocator.featurizer.feature_bounds`), the replay environments' bounds
    tightened from a log (:meth:`allocator.envs.pools.ReplaySettings.observation_space`)
    and the off-policy outcome model.

    Attributes:
        n_arms: number of arms ``A``.
        width: number of features.
        pack: ``pack(**values) -> list[float]``: one state's features in column order,
            from keyword arguments named as the layout's attributes (a list of ``A``
            values for a per-arm feature, not modified, a number for a query feature); every feature
            is required and no other is accepted (TypeError). The scalar featurizer's
            fast path: a function built from the spec, as :mod:`dataclasses` builds
            ``__init__``, about as fast as a hand-written concatenation.
        names: every column's name, in order.
        low: generic lower bound of every column.
        high: generic upper bound of every column.
    """

    def __init__(self, n_arms: int) -> None:
        self.n_arms = n_arms
        self.names: list[str] = []
        self.low: list[float] = []
        self.high: list[float] = []
        self._positions: dict[str, int | slice] = {}
        for feature in PER_ARM_FEATURES:
            start = len(self.names)
            self._positions[feature.attribute] = slice(start, start + n_arms)
            self._extend(feature, n_arms, per_arm=True)
        for feature in QUERY_FEATURES:
            self._positions[feature.attribute] = len(self.names)
            self._extend(feature, 1, per_arm=False)
        self.width = len(self.names)
        self.__dict__.update(self._positions)  # plain attributes: as fast as any
        self.pack = _packer(self._positions)

    def _extend(self, feature: Feature, count: int, *, per_arm: bool) -> None:
        self.names += ([f"{feature.name}[{{}}]"] * count if per_arm else [feature.name])
        self.low += [feature.low] * count
        self.high += [feature.high] * count

    def __getattr__(self, name: str) -> int | slice:
        # Only for names that are no attribute: the positions are set in __init__.
        raise AttributeError(f"no feature {name!r} in the spec (allocator.feature_spec)")

    def position(self, name: str) -> int | slice:
        """The position of a feature by its spec name (``"lambda"`` included)."""
        attribute = Feature(name).attribute
        return getattr(self, attribute)

    def named(self, arms: list[str] | tuple[str, ...]) -> list[str]:
        """Every column's name, per-arm ones as ``name[arm]`` for ``arms``."""
        per_arm = iter(list(arms) * len(PER_ARM_FEATURES))
        return [name.format(next(per_arm)) if name.endswith("[{}]") else name
                for name in self.names]


def _packer(positions: dict[str, int | slice]) -> Callable[..., list[float]]:
    """``pack(*, <every attribute>)``: the values concatenated in column order."""
    ordered = sorted(positions, key=lambda name: _start(positions[name]))
    parts, scalars = [], []
    for name in ordered:
        if isinstance(positions[name], slice):
            if scalars:
                parts.append(f"[{', '.join(scalars)}]")
                scalars = []
            parts.append(name)
        else:
            scalars.append(name)
    if scalars:
        parts.append(f"[{', '.join(scalars)}]")
    source = (f"def pack(*, {', '.join(ordered)}):\n"
              f"    return {' + '.join(parts)}\n")
    namespace: dict[str, object] = {}
    exec(compile(source, "<allocator.feature_spec pack>", "exec"), namespace)
    return namespace["pack"]  # type: ignore[return-value]


def _start(position: int | slice) -> int:
    return position.start if isinstance(position, slice) else position


@lru_cache(maxsize=64)
def feature_layout(n_arms: int) -> FeatureLayout:
    """The :class:`FeatureLayout` for ``n_arms`` arms (cached: treat it as read-only)."""
    return FeatureLayout(n_arms)

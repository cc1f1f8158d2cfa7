"""Allocation policies: the baselines behind one interface and a registry by name.

Every policy is a small frozen dataclass implementing :class:`Policy` (``act`` on a
batch of states and action masks); :func:`make_policy` builds one by its registered name.
Importing this package needs numpy only (Adaptive-Consistency imports scipy the first
time it decides).

==========================  ===================================  ================
name                        class                                knob
==========================  ===================================  ================
``fixed-n``                 :class:`FixedN`                      ``n``
``adaptive-consistency``    :class:`AdaptiveConsistency`         ``threshold``
``esc``                     :class:`EarlyStoppingSC`             ``window``
``confidence-threshold``    :class:`ConfidenceThreshold`         ``tau``
``difficulty-binned``       :class:`DifficultyBinned`            ``target``
==========================  ===================================  ================
"""

from allocator.policies.base import Policy
from allocator.policies.difficulty_binned import DifficultyBinned
from allocator.policies.registry import (
    POLICIES,
    available_policies,
    make_policy,
    register_policy,
)
from allocator.policies.self_consistency import (
    AdaptiveConsistency,
    ConfidenceThreshold,
    EarlyStoppingSC,
    FixedN,
)

__all__ = [
    "POLICIES",
    "AdaptiveConsistency",
    "ConfidenceThreshold",
    "DifficultyBinned",
    "EarlyStoppingSC",
    "FixedN",
    "Policy",
    "available_policies",
    "make_policy",
    "register_policy",
]

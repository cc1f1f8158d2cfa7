"""Allocation policies: the baselines behind one interface and a registry by name.

Every policy is a small frozen dataclass implementing :class:`Policy` (``act`` on a batch
of states and action masks); :func:`make_policy` builds one by its registered name (its
docstring lists every name, class and knob; each class's docstring says what it decides).
Importing this package needs numpy only (Adaptive-Consistency imports scipy the first
time it decides).
"""

from allocator.policies.base import Policy
from allocator.policies.bayes_stop import BayesStop
from allocator.policies.blend_asc import BlendASC
from allocator.policies.difficulty_binned import DifficultyBinned
from allocator.policies.multi_arm import Cascade, RoundRobin, Router
from allocator.policies.parallel import ParallelN
from allocator.policies.pdr import PDRSchedule
from allocator.policies.registry import (
    POLICIES,
    available_policies,
    make_policy,
    register_policy,
)
from allocator.policies.rtv import RTVSchedule
from allocator.policies.self_consistency import (
    AdaptiveConsistency,
    ConfidenceThreshold,
    EarlyStoppingSC,
    FixedN,
)
from allocator.policies.stochastic import EpsilonGreedy
from allocator.policies.verifier import BestOfN, UntilVerified, WeightedVote

__all__ = [
    "POLICIES",
    "AdaptiveConsistency",
    "BayesStop",
    "BestOfN",
    "BlendASC",
    "Cascade",
    "ConfidenceThreshold",
    "DifficultyBinned",
    "EarlyStoppingSC",
    "EpsilonGreedy",
    "FixedN",
    "PDRSchedule",
    "ParallelN",
    "Policy",
    "RTVSchedule",
    "RoundRobin",
    "Router",
    "UntilVerified",
    "WeightedVote",
    "available_policies",
    "make_policy",
    "register_policy",
]

"""Allocation policies: the baselines behind one interface and a registry by name.

Every policy is a small frozen dataclass implementing :class:`Policy` (``act`` on a batch
of states and action masks); :func:`make_policy` builds one by its registered name (each
class's docstring says what it decides; each module groups a family: self-consistency,
verifier, multi-arm, schedules of RTV and PDR, stochastic). ``learned`` (a bundle's
network) is registered by entry and imported on first lookup
(:data:`allocator.policies.registry.ENTRIES`). Importing this package needs numpy only
(Adaptive-Consistency imports scipy the first time it decides).

==========================  ===================================  ================
name                        class                                knob
==========================  ===================================  ================
``fixed-n``                 :class:`FixedN`                      ``n``
``parallel-n``              :class:`ParallelN`                   ``n``
``adaptive-consistency``    :class:`AdaptiveConsistency`         ``threshold``
``esc``                     :class:`EarlyStoppingSC`             ``window``
``confidence-threshold``    :class:`ConfidenceThreshold`         ``tau``
``difficulty-binned``       :class:`DifficultyBinned`            ``target``
``blend-asc``               :class:`BlendASC`                    ``budget``
``bayes-stop``              :class:`BayesStop`                   ``price``
``epsilon-greedy``          :class:`EpsilonGreedy`               ``epsilon``
``until-verified``          :class:`UntilVerified`               ``n``
``best-of-n``               :class:`BestOfN`                     ``n``
``weighted-vote``           :class:`WeightedVote`                ``n``
``round-robin``             :class:`RoundRobin`                  ``max_samples``
``cascade``                 :class:`Cascade`                     ``tau``
``router``                  :class:`Router`                      ``threshold``
``rtv``                     :class:`RTVSchedule`                 ``n``
``pdr``                     :class:`PDRSchedule`                 ``refinements``
==========================  ===================================  ================
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

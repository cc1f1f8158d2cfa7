"""Recursive Tournament Voting as a fixed schedule: ``n`` rollouts, then one tournament.

Kim et al. 2026 (arXiv 2604.16529) draw ``N`` independent rollouts and select one by a
single-elimination bracket of LLM-judge comparisons. As a policy: SAMPLE ``arm`` until
``n`` rollouts are drawn, then VERIFY once (with
:class:`~allocator.executors.TournamentVoting`, one VERIFY is the knock-out over every
candidate drawn; groups, votes per comparison and the judge are the executor's settings),
then STOP: the answer is the tournament's champion. Where VERIFY is masked (a log
without tournament rows, or none that saw exactly these rollouts) it STOPs after the
rollouts, with the vote: on such a log it is fixed-N, and the evaluator does not run it
there (its sweep raises ``NotApplicable``).

Deviations from the paper, and why: the per-rollout structured summaries, the ``V``
votes with randomised positions and the recursive refinement of the winners are the
executor's business (a policy only chooses the actions); the schedule here is the
paper's selection stage, with its ``N = 8`` as the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator.actions import STOP, verify_action
from allocator.featurizer import StateBatch
from allocator.policies._common import check_int, check_mask, sample_or_stop
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy
from allocator.policies.verifier import verify_pending

__all__ = ["RTVSchedule"]

_OWNER = "RTVSchedule ('rtv')"


@register_policy
@dataclass(frozen=True)
class RTVSchedule(Policy):
    """``n`` rollouts of ``arm``, then one tournament VERIFY over all of them, then STOP.

    Args:
        n: rollouts per query (>= 2: a tournament needs two entrants); the knob.
        arm: the arm sampled.
    """

    name: ClassVar[str] = "rtv"
    knob: ClassVar[str | None] = "n"
    default_sweep: ClassVar[tuple[int, ...]] = (2, 4, 8, 16, 32)

    n: int = 8
    arm: int = 0

    def __post_init__(self) -> None:
        check_int(_OWNER, "n", self.n, 2)
        check_int(_OWNER, "arm", self.arm, 0)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) below ``n`` rollouts; then VERIFY while one is pending; else STOP."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        drawn = np.asarray(state.samples)[:, self.arm]
        actions = sample_or_stop(drawn < self.n, mask, self.arm)
        judge = (actions == STOP) & verify_pending(state, mask)
        actions[judge] = verify_action(np.shape(state.samples)[1])
        return actions

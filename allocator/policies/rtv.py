"""Recursive Tournament Voting as a fixed schedule (``rtv``): rollouts, a wave conditioned
on the winners, a final tournament.

:class:`RTVSchedule` is the policy that the :class:`~allocator.executors.TournamentVoting`
executor follows and its logs replay; its docstring gives the schedule after Kim et al.
2026 (arXiv 2604.16529) and the deviations from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator.actions import STOP, refine_action, verify_action
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
    """``n`` rollouts of ``arm``, ``refinements`` rollouts conditioned on the winners,
    one final tournament VERIFY, then STOP.

    Kim et al. 2026 (arXiv 2604.16529): ``N`` rollouts, each turned into a structured
    summary; a bracket of LLM-judge comparisons (groups of ``G``, ``V`` votes each) narrows
    them to a champion and a top-K; the top-K summaries condition a new wave of rollouts; a
    final tournament picks the answer. As a policy: SAMPLE ``arm`` until ``n`` rollouts are
    drawn; REFINE until ``refinements`` rollouts of the new wave are drawn (with
    :class:`~allocator.executors.TournamentVoting` the first REFINE runs the bracket over
    the rollouts and conditions the wave on its top-K's summaries; one wave while
    ``refinements`` is at most the executor's ``width``, 8 by default); then VERIFY once
    (the final tournament over the wave) and STOP: the answer is its champion.
    ``refinements=0`` is the selection stage alone (one tournament over the ``n``
    rollouts).

    Where REFINE is masked (a log without workspaces that saw exactly these rollouts) it
    goes straight to the final tournament; where VERIFY is masked it STOPs with the vote
    (on such a log it is fixed-N, and the evaluator does not run it: its sweep raises
    ``NotApplicable``).

    Deviations from the paper, and why: the summaries, ``G``, ``V``, ``K``, the position
    randomisation and the judge are the executor's settings (a policy only chooses the
    actions); ``n = 8`` and ``refinements = 8`` are this project's defaults (one wave as
    large as the first; the stored pages did not give the paper's own ``N``).

    Args:
        n: rollouts per query (>= 2: a tournament needs two entrants); the knob.
        refinements: rollouts of the wave conditioned on the top-K (>= 0).
        arm: the arm sampled.
    """

    name: ClassVar[str] = "rtv"
    knob: ClassVar[str | None] = "n"
    default_sweep: ClassVar[tuple[int, ...]] = (2, 4, 8, 16, 32)

    n: int = 8
    refinements: int = 8
    arm: int = 0

    def __post_init__(self) -> None:
        check_int(_OWNER, "n", self.n, 2)
        check_int(_OWNER, "refinements", self.refinements, 0)
        check_int(_OWNER, "arm", self.arm, 0)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """SAMPLE(arm) below ``n`` rollouts; then REFINE below ``refinements`` while
        allowed; then VERIFY while one is pending; else STOP."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        arms = np.shape(state.samples)[1]
        drawn = np.asarray(state.samples)[:, self.arm]
        actions = sample_or_stop(drawn < self.n, mask, self.arm)
        drafting = actions != STOP
        refine = (~drafting & (np.asarray(state.refines) < self.refinements)
                  & mask[:, refine_action(arms)])
        actions[refine] = refine_action(arms)
        judge = ~drafting & ~refine & verify_pending(state, mask)
        actions[judge] = verify_action(arms)
        return actions

"""Parallel-Distill-Refine as a fixed schedule (``pdr``): drafts, refinement rounds, the
last round's answer.

:class:`PDRSchedule` is the policy that the
:class:`~allocator.executors.ParallelDistillRefine` executor follows and its logs replay;
its docstring gives the schedule after Madaan et al. 2025 (arXiv 2510.01123) and the
deviations from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from allocator.actions import STOP, refine_action, verify_action
from allocator.errors import ParameterError
from allocator.featurizer import StateBatch
from allocator.policies._common import check_int, check_mask, sample_or_stop
from allocator.policies.base import Policy
from allocator.policies.registry import register_policy
from allocator.policies.verifier import verify_pending

__all__ = ["PDRSchedule"]

_OWNER = "PDRSchedule ('pdr')"


@register_policy
@dataclass(frozen=True)
class PDRSchedule(Policy):
    """``drafts`` drafts of ``arm``, ``refinements`` refinements, a final tournament.

    Madaan et al. 2025 (arXiv 2510.01123) draw ``M`` drafts in parallel, distil them into a
    bounded workspace, refine conditioned on it, and repeat for ``R`` rounds; the answer is
    the last round's output. As a policy: SAMPLE ``arm`` until ``drafts`` drafts are drawn,
    then REFINE until ``refinements`` refinements are drawn (with
    :class:`~allocator.executors.ParallelDistillRefine` the rounds and their widths, and
    how each workspace is selected, are the executor's ``width`` and ``workspace``: the
    default 8 refinements are two rounds at its default width 4), then, with
    ``tournament``, VERIFY once: the executor's final tournament over the *last round's*
    candidates, whose champion answers (a last round of width 1 needs no judge). Then STOP.

    Where REFINE is masked (a log without refinements, or none conditioned on exactly the
    candidates drawn) it stops refining; where VERIFY is masked it answers by the vote. The
    evaluator runs it only on logs with refinements (its sweep raises ``NotApplicable``
    elsewhere).

    Deviations from the paper, and why: with ``tournament=False`` the answer is the
    session's vote over drafts and refinements (the rule every strategy and replay share);
    the widths, the workspace's selection rule and its bound are the executor's settings (a
    policy only chooses the actions).

    Args:
        drafts: drafts per query (>= 1).
        refinements: refinements per query (>= 0); the knob.
        tournament: VERIFY once at the end (the executor's tournament picks the answer).
        arm: the arm drafted.
    """

    name: ClassVar[str] = "pdr"
    knob: ClassVar[str | None] = "refinements"
    default_sweep: ClassVar[tuple[int, ...]] = (0, 2, 4, 8, 12)

    drafts: int = 8
    refinements: int = 8
    tournament: bool = True
    arm: int = 0

    def __post_init__(self) -> None:
        check_int(_OWNER, "drafts", self.drafts, 1)
        check_int(_OWNER, "refinements", self.refinements, 0)
        check_int(_OWNER, "arm", self.arm, 0)
        if not isinstance(self.tournament, bool | np.bool_):
            raise ParameterError(_OWNER, "tournament", "True or False", self.tournament)

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        """Draft below ``drafts``; then REFINE below ``refinements`` while allowed; then
        VERIFY (with ``tournament``) while one is pending; else STOP."""
        mask = check_mask(_OWNER, state, mask, self.arm)
        arms = np.shape(state.samples)[1]
        drafted = np.asarray(state.samples)[:, self.arm]
        actions = sample_or_stop(drafted < self.drafts, mask, self.arm)
        drafting = actions != STOP
        refine = (~drafting & (np.asarray(state.refines) < self.refinements)
                  & mask[:, refine_action(arms)])
        actions[refine] = refine_action(arms)
        if self.tournament:
            judge = ~drafting & ~refine & verify_pending(state, mask)
            actions[judge] = verify_action(arms)
        return actions

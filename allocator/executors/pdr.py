"""Parallel-Distill-Refine (Madaan et al. 2025, arXiv 2510.01123) driven by a policy.

:class:`ParallelDistillRefine` is :class:`~allocator.executors.TournamentVoting` with
PDR's defaults (a distilled workspace, rounds of 4 refinements); its docstring gives the
paper's pipeline, what each action does here and the deviations from the paper.
"""

from __future__ import annotations

from typing import Any, ClassVar

from allocator.executors.tournament import (
    DEFAULT_DISTILL_PROMPT,
    DEFAULT_REFINE_PROMPT,
    TournamentVoting,
)

__all__ = ["DEFAULT_DISTILL_PROMPT", "DEFAULT_REFINE_PROMPT", "ParallelDistillRefine"]


class ParallelDistillRefine(TournamentVoting):
    """Parallel-Distill-Refine (PDR) driven by a policy: :class:`TournamentVoting` with
    PDR's defaults (``workspace="summary"``, ``width=4``).

    The paper (Madaan et al. 2025, arXiv 2510.01123): ``M_1`` drafts in parallel; distil
    them into a *bounded* textual workspace (a summary, or the top-k drafts); ``M_2``
    refinements conditioned on it; distil those into a new workspace (it does not
    persist across rounds); ... ``R`` rounds; the answer is the last round's output.
    Here the policy decides every step and :class:`TournamentVoting` does the work; this
    class only sets PDR's defaults.

    Actions:
        SAMPLE(arm): one more draft (round 0).
        REFINE: one refinement of the current round (``width``: refinements per round,
            an int or one per round). The first REFINE of a round builds its workspace
            from every candidate drawn since the previous workspace: round 1 from the
            drafts; round ``r`` from round ``r - 1``'s refinements *and* any draft drawn
            meanwhile (so late drafts are distilled too). ``workspace="summary"`` (the
            default): one distillation call, capped at ``summary_max_tokens`` and cut to
            ``summary_max_chars``; ``"top-k"``: the ``top_k`` candidates whose answers
            most sources share, verbatim (each cut to ``summary_max_chars``);
            ``"tournament"``: RTV's bracket over the sources and the structured
            summaries of its top ``top_k`` (the agentic PDR of Kim et al. 2026). REFINE
            is masked until a draft exists.
        VERIFY: the final tournament over the *last round's* candidates (earlier rounds
            are superseded), as :class:`TournamentVoting` runs it: the answer is the
            last round's output, chosen by the judge when the round holds several.
        STOP: the last tournament's champion.

    Recorded rows and replay: as :class:`TournamentVoting`'s. A workspace's ``summary``
    row carries the distillation's tokens (``"summary"``), or cost 0 with its
    selection's rows (``workspace`` = its attempt id) carrying theirs.

    Deviations from the paper, and why:
        With no final VERIFY the answer is the session's vote over every candidate (the
        session's rule, shared by every strategy and by replay; the ``pdr`` schedule
        always ends with the tournament); the ``top-k`` rule ranks by answer support
        (the paper ranks by a quality signal; ``"tournament"`` is the judged ranking);
        rounds and widths are enacted as the policy asks, so a policy may stop
        mid-round.

    Args:
        client: the LLM client.
        arms: arm name -> request parameters (drafts).
        extract: ``text -> answer``.
        **kwargs: the arguments of :class:`TournamentVoting` (``workspace``, ``width``,
            ``top_k``, ``refine_arm``, ``distill``, ``distill_prompt``,
            ``refine_prompt``, ``summary_max_*``, the judge's ``votes``,
            ``group_size``...) and of :class:`~allocator.executors.base.Executor`.
    """

    name: ClassVar[str] = "pdr"
    default_workspace: ClassVar[str] = "summary"
    default_width: ClassVar[int] = 4

    def __init__(self, client: Any, arms: Any, extract: Any, **kwargs: Any) -> None:
        super().__init__(client, arms, extract, **kwargs)

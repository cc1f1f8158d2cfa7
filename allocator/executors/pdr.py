"""Parallel-Distill-Refine: parallel drafts, a bounded summary, refinements on the summary.

After Madaan et al. 2025, "Rethinking Thinking Tokens: LLMs as Improvement Operators":
draft in parallel, distil the drafts into a short workspace, refine conditioned on it,
repeat. Here the policy decides every step:

- SAMPLE(arm): one more draft (round 0); ``parallelism`` drafts stay in flight while the
  policy keeps drafting.
- REFINE: one refinement of the current round ``r = 1 + refinements so far // width``.
  The first REFINE of a round distils the previous round's candidates (round 1: the
  drafts; round ``r``: the refinements of round ``r - 1``) into a summary: one LLM call
  capped at ``summary_max_tokens`` (and cut to ``summary_max_chars``), so the workspace
  stays bounded however many candidates there are. Refinements of a round are
  conditioned on its summary (up to ``parallelism`` in flight, never more than the
  round's ``width``).
- VERIFY: a knock-out tournament with an LLM judge over the candidates drawn since the
  last one (and the reigning champion), exactly as :class:`TournamentVoting` runs it
  (``judge``, ``votes``, ``group_size``... are its arguments).
- STOP: the last tournament's champion, or, if the policy never paid for one, the vote
  over drafts and refinements (:meth:`Session.final_answer`): the final answer is "by
  vote or tournament", as the policy decides.

Where the summary's cost goes. Every call has its own row with its own ``cost``, so the
``cost`` column sums to what was spent: the summary is recorded as a ``verify`` row
(``role = "summary"``, never a candidate in replay) with its tokens in ``cost`` and
``charged_to`` the attempt id of the round's first refinement. The session is told the
summary's cost with that first refinement (its reported cost is the refinement's tokens
plus the summary's), which is what replay charges too: the first REFINE of a round pays
for its summary, whichever refinement of the round it draws.

What a refinement was conditioned on. Each refinement row records ``summary`` (the
summary row's attempt id: the round's *workspace*) and ``conditioned_on`` (a JSON list
of the attempt ids the summary distilled: the drafts reported when the round began, or
the previous round's refinements). Replay (:class:`envs.ReplayEnv`) offers REFINE only
when those were exactly the candidates drawn, so a refinement is never replayed on other
drafts than the ones it saw. The session masks REFINE until a draft was drawn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from allocator.errors import ParameterError
from allocator.executors.run import Drawn, RunState, completion_columns
from allocator.executors.tournament import TournamentVoting

__all__ = ["DEFAULT_DISTILL_PROMPT", "DEFAULT_REFINE_PROMPT", "ParallelDistillRefine"]

#: The distillation prompt: fields ``question``, ``candidates``, ``count``, ``max_words``.
DEFAULT_DISTILL_PROMPT = (
    "Problem:\n{question}\n\n"
    "Below are {count} attempted solutions.\n\n{candidates}\n\n"
    "Write a summary of at most {max_words} words for someone who will solve the problem "
    "again: the approaches tried, the answers reached and how often, where the attempts "
    "disagree, and any mistakes you can see. Do not write a full solution."
)

#: The refinement prompt: fields ``question``, ``summary``, ``round``.
DEFAULT_REFINE_PROMPT = (
    "Problem:\n{question}\n\n"
    "Summary of earlier attempts:\n{summary}\n\n"
    "Using the summary, solve the problem again carefully, correcting any mistakes it "
    "points out, and state the final answer at the end in the same format as asked."
)

#: The refinement prompt's summary when no candidate exists yet.
NO_ATTEMPTS = "(no earlier attempts)"


@dataclass
class _Summary:
    text: str
    attempt_id: str | None  # its row, held until charged (None: no distillation call)
    cost: float
    sources: tuple[str, ...] = ()
    charged: bool = False


class ParallelDistillRefine(TournamentVoting):
    """Parallel-Distill-Refine (PDR) driven by a policy.

    Args:
        client: the LLM client.
        arms: arm name -> request parameters (drafts).
        extract: ``text -> answer``.
        width: refinements per round (a round's summary serves ``width`` refinements).
        refine_arm: the arm whose parameters refinements use (default: the first arm);
            refinement rows carry it in ``arm``.
        distill: request parameters of the distillation (default: the refine arm's);
            ``max_tokens`` is set to ``summary_max_tokens``.
        distill_prompt: the distillation template (fields ``question``, ``candidates``,
            ``count``, ``max_words``).
        refine_prompt: the refinement template (fields ``question``, ``summary``,
            ``round``).
        summary_max_tokens: the distillation's ``max_tokens``.
        summary_max_chars: the summary is cut to this many characters.
        summary_max_words: the length asked for in the prompt.
        **kwargs: the tournament's arguments (``judge``, ``votes``, ``group_size``,
            ``judge_prompt``...; see :class:`TournamentVoting`) and the other arguments
            of :class:`~allocator.executors.base.Executor`.
    """

    name: ClassVar[str] = "pdr"
    supports_refine: ClassVar[bool] = True

    def __init__(self, client: Any, arms: Any, extract: Any, *, width: int = 4,
                 refine_arm: str | None = None, distill: Mapping[str, Any] | None = None,
                 distill_prompt: str = DEFAULT_DISTILL_PROMPT,
                 refine_prompt: str = DEFAULT_REFINE_PROMPT, summary_max_tokens: int = 512,
                 summary_max_chars: int = 4000, summary_max_words: int = 200,
                 **kwargs: Any) -> None:
        super().__init__(client, arms, extract, **kwargs)
        for name, value in (("width", width), ("summary_max_tokens", summary_max_tokens),
                            ("summary_max_chars", summary_max_chars),
                            ("summary_max_words", summary_max_words)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError("ParallelDistillRefine", name, "an integer >= 1", value)
        self.refine_arm = refine_arm if refine_arm is not None else next(iter(self.arms))
        if self.refine_arm not in self.arms:
            raise ParameterError("ParallelDistillRefine", "refine_arm",
                                 f"one of the arms {list(self.arms)}", refine_arm)
        self.width = width
        self.distill = {**(distill if distill is not None else self.arms[self.refine_arm]),
                        "max_tokens": summary_max_tokens}
        self.distill_prompt = distill_prompt
        self.refine_prompt = refine_prompt
        self.summary_max_tokens = summary_max_tokens
        self.summary_max_chars = summary_max_chars
        self.summary_max_words = summary_max_words

    # ------------------------------------------------------------ REFINE
    async def _refine(self, run: RunState) -> bool:
        refined = [drawn for drawn in run.candidates if drawn.kind == "refine"]
        round_ = 1 + len(refined) // self.width
        key = ("refine", round_)
        summaries: dict[int, _Summary] = run.extra.setdefault("summaries", {})
        if round_ not in summaries:
            if run.calls_left < 2 and not run.inflight.available(key):
                return False  # no room for the summary and a refinement
            summaries[round_] = await self._summarise(run, round_)
        summary = summaries[round_]
        in_round = sum(drawn.round == round_ for drawn in refined)
        arm = self.refine_arm
        conditioned = json.dumps(list(summary.sources))
        self._top_up(run, key, lambda: self._messages(
            self.refine_prompt, run.problem, summary=summary.text, round=round_),
            self.arms[arm], limit=self.width - in_round,
            info={"round": round_, "arm": arm, "summary": summary.attempt_id,
                  "conditioned_on": conditioned})
        if not run.inflight.available(key):
            return False
        outcome = await run.inflight.take(key)
        first = not summary.charged and summary.attempt_id is not None
        drawn = self._report(run, outcome, kind="refine", arm=arm, round_=round_,
                             extra_cost=summary.cost if first else 0.0,
                             extra={"summary": summary.attempt_id,
                                    "conditioned_on": conditioned})
        if first and summary.attempt_id is not None:
            summary.charged = True
            run.update(summary.attempt_id, charged_to=drawn.attempt_id)
            run.release([summary.attempt_id])
        return True

    async def _summarise(self, run: RunState, round_: int) -> _Summary:
        sources = [drawn for drawn in run.candidates
                   if (drawn.kind == "sample") == (round_ == 1)
                   and (round_ == 1 or drawn.round == round_ - 1)]
        if not sources:
            return _Summary(NO_ATTEMPTS, None, 0.0)
        messages = self._messages(
            self.distill_prompt, run.problem, candidates=_listed(sources),
            count=len(sources), max_words=self.summary_max_words)
        outcome = await run.call(("distill", round_), messages, self.distill)
        completion = outcome.completions[0]
        text = completion.text.strip()[: self.summary_max_chars]
        cost = float(self.cost(completion))
        row = run.record({
            "kind": "verify", "arm": self.refine_arm, "round": round_, "answer": None,
            "cost": cost, "call_cost": cost, "charged_to": None, "role": "summary",
            "step": run.step, "sources": len(sources),
            "conditioned_on": json.dumps([drawn.attempt_id for drawn in sources]),
            **completion_columns(outcome, completion)}, hold=True)
        return _Summary(text, row["attempt_id"], cost,
                        tuple(drawn.attempt_id for drawn in sources))


def _listed(candidates: list[Drawn]) -> str:
    return "\n\n".join(f"Attempt {i}:\n{drawn.text.strip()}"
                       for i, drawn in enumerate(candidates, start=1))

"""Recursive Tournament Voting: an LLM judge compares candidates in small groups, winners
advance until one remains.

The policy decides how many candidates to draw (SAMPLE) and whether to pay for
comparisons (VERIFY). A VERIFY runs a knock-out tournament over the candidates drawn
since the last one plus the reigning champion: candidates are split, in the order drawn,
into groups of ``group_size`` (a last group of one advances without a comparison); each
group is one judge request with ``n = votes`` completions, each completion a vote; the
group's winner is the candidate with most votes (ties: the candidate whose answer has
more samples, then the earlier one; no parsable vote: the first). Winners advance; with
pairs, ``K`` entrants take ``ceil(log2 K)`` rounds. With ``skip_agreeing`` a group whose
candidates share one answer needs no judge: its first candidate advances.

Scores (what :meth:`Session.verify` and the ``score`` column receive): each new
candidate gets ``rounds won / rounds judged`` in its tournament (the winner 1.0; a
winner never judged, e.g. the only entrant, 1.0), and candidates with the same answer
share the best score among them (an agreeing group advances one twin unjudged: the other
did not lose). A reigning champion that a new candidate beats is re-scored in the
session (:meth:`Session.verify` with ``rescore``) with its result in the new
tournament, so :meth:`Session.final_answer` is the last tournament's winner, as the
executor's answer is (before any tournament: the majority vote); its log row keeps the
score of the tournament it entered first.

Recorded: every sample (held until its tournament so that its row carries its score)
and one ``verify`` row per judge vote: ``comparison`` (``t<tournament>r<round>c<group>``),
``candidates`` (JSON list of attempt ids, in the order shown), ``vote`` (the attempt id
voted for, null if unparsable), ``winner``, ``tournament``, ``tournament_round``,
``completion``, ``event``, ``decided_by`` (``"votes"``, or the tie-breaks that decided
a tied comparison or one without any parsable vote: never silently the judge's);
its ``answer`` is the voted candidate's answer and its ``cost`` the vote's tokens. A
candidate that advances unjudged gets an explicit ``bye`` row (cost 0, ``winner``,
``candidates``, ``decided_by``: ``"lone candidate"`` or ``"agreeing answers"``).
Each VERIFY then writes one ``verification`` row (``kind``
verify, ``cost`` 0): ``event`` (``<run>:t<tournament>``, shared by its votes), ``after``
(the run's previous event, null for the first), ``drawn`` (JSON list of the attempt ids
of every candidate the session held when it verified), ``scores`` (JSON object attempt
id -> the score the session received, re-scores included) and ``winner``.

Replay. A tournament's scores depend on the opponents drawn, so replay does not read
them as absolute scores: :class:`envs.ReplayEnv` offers VERIFY on a tournament log only
where the candidates drawn are exactly an event's ``drawn`` after exactly its ``after``,
and then applies the event's logged ``scores`` and charges the cost of its votes: what
the live session saw, exactly. (The knock-out pairs entrants in the order drawn; replay
reproduces the logged outcome for the set drawn, whatever order replay drew it in.)
A dethroned champion's earlier-verified twins (same answer) are re-scored with it, so the
session's best verified answer is always the reigning champion's, as STOP returns.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from allocator._aio import gather_or_cancel
from allocator.errors import ParameterError
from allocator.executors.base import Executor
from allocator.executors.run import Drawn, RunState, completion_columns

__all__ = ["DEFAULT_JUDGE_PROMPT", "TournamentVoting", "parse_vote"]

#: The judge prompt: fields ``question``, ``candidates`` (numbered texts), ``numbers``.
DEFAULT_JUDGE_PROMPT = (
    "Candidate solutions to one problem follow. Decide which candidate reaches the correct "
    "final answer: check each one's reasoning yourself; do not favour an answer because "
    "of its position.\n\n"
    "Problem:\n{question}\n\n"
    "{candidates}\n\n"
    'Think briefly, then end with one line of the form "Best: <number>", naming the best '
    "candidate ({numbers})."
)

_VOTE = re.compile(r"best\W{0,3}(?:candidate\W{0,3})?(\d+)", re.IGNORECASE)


def parse_vote(text: str, count: int) -> int | None:
    """The candidate a judge's reply votes for, 0-based, or None.

    Reads the last ``Best: <n>`` (1-based) in the reply, else a reply that is only a
    number.
    """
    found = _VOTE.findall(text)
    number = found[-1] if found else text.strip().rstrip(".")
    if not number.isdigit():
        return None
    choice = int(number) - 1
    return choice if 0 <= choice < count else None


class TournamentVoting(Executor):
    """Recursive Tournament Voting (RTV) with an LLM judge.

    Args:
        client: the LLM client (samples and judge).
        arms: arm name -> request parameters.
        extract: ``text -> answer``.
        judge: request parameters of the judge (default: the first arm's).
        votes: judge completions per comparison (one request with ``n = votes``).
        group_size: candidates per comparison (2 = pairs).
        judge_prompt: the judge's template (fields ``question``, ``candidates``,
            ``numbers`` and the problem's metadata).
        parse_vote: ``(reply, count) -> 0-based choice or None``.
        skip_agreeing: a group whose candidates share one answer advances its first
            candidate without asking the judge.
        **kwargs: the other arguments of :class:`~allocator.executors.base.Executor`.
    """

    name: ClassVar[str] = "rtv"
    supports_verify: ClassVar[bool] = True
    holds_candidates: ClassVar[bool] = True

    def __init__(self, client: Any, arms: Any, extract: Any, *,
                 judge: Mapping[str, Any] | None = None, votes: int = 3,
                 group_size: int = 2, judge_prompt: str = DEFAULT_JUDGE_PROMPT,
                 parse_vote: Callable[[str, int], int | None] = parse_vote,
                 skip_agreeing: bool = True, **kwargs: Any) -> None:
        super().__init__(client, arms, extract, **kwargs)
        for name, value, least in (("votes", votes, 1), ("group_size", group_size, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ParameterError("TournamentVoting", name, f"an integer >= {least}", value)
        self.judge = dict(judge) if judge is not None else dict(next(iter(self.arms.values())))
        self.votes = votes
        self.group_size = group_size
        self.judge_prompt = judge_prompt
        self.parse_vote = parse_vote
        self.skip_agreeing = bool(skip_agreeing)

    # ------------------------------------------------------------ VERIFY
    async def _verify(self, run: RunState) -> bool:
        state = run.session.state
        new = [drawn for drawn in run.candidates if not state.is_verified[drawn.index]]
        champion: Drawn | None = run.extra.get("champion")
        entrants = ([champion] if champion is not None else []) + new
        if comparisons_needed(len(entrants), self.group_size) > run.calls_left:
            return False
        run.extra["tournaments"] = number = run.extra.get("tournaments", 0) + 1
        event = f"{run.log.run}:t{number}"
        winner, won, played, cost = await self._tournament(run, entrants, number, event)
        run.extra["champion"] = winner
        scores = _scores(entrants, new, winner, won, played)
        dethroned = champion is not None and champion is not winner
        if dethroned:  # re-judged and beaten: the session must not keep its old 1.0
            old = _scores(entrants, [champion], winner, won, played)[champion.index]
            # Nor may the old champion's twins verified earlier (they shared its 1.0): the
            # session's best verified answer must be the new champion's, as STOP returns.
            scores.update({drawn.index: old for drawn in run.candidates
                           if state.is_verified[drawn.index]
                           and drawn.answer == champion.answer})
        for drawn in new:
            run.update(drawn.attempt_id, score=scores[drawn.index])
        run.release(drawn.attempt_id for drawn in new)
        self._record_event(run, event, winner, scores)
        run.verify(scores, cost, rescore=dethroned)
        return True

    def _record_event(self, run: RunState, event: str, winner: Drawn,
                      scores: Mapping[int, float]) -> None:
        """The ``verification`` row: what this VERIFY showed the session, for replay."""
        ids = {drawn.index: drawn.attempt_id for drawn in run.candidates}
        run.record({
            "kind": "verify", "arm": winner.arm, "answer": winner.answer, "cost": 0.0,
            "role": "verification", "step": run.step, "event": event,
            "after": run.extra.get("last_event"), "winner": winner.attempt_id,
            "drawn": json.dumps([drawn.attempt_id for drawn in run.candidates]),
            "scores": json.dumps({ids[index]: score for index, score in scores.items()})})
        run.extra["last_event"] = event

    async def _tournament(self, run: RunState, entrants: list[Drawn], number: int,
                          event: str) -> tuple[Drawn, Counter[int], Counter[int], float]:
        alive, won, played, cost, level = list(entrants), Counter(), Counter(), 0.0, 0
        while len(alive) > 1:
            level += 1
            groups = [alive[i:i + self.group_size]
                      for i in range(0, len(alive), self.group_size)]
            results = await gather_or_cancel(
                self._compare(run, group, f"t{number}r{level}c{c}", number, level, event)
                for c, group in enumerate(groups))
            for group, (winner, spent, judged) in zip(groups, results, strict=True):
                cost += spent
                if judged:
                    played.update(drawn.index for drawn in group)
                    won[winner.index] += 1
            alive = [winner for winner, _, _ in results]
        return alive[0], won, played, cost

    async def _compare(self, run: RunState, group: list[Drawn], comparison: str,
                       number: int, level: int, event: str) -> tuple[Drawn, float, bool]:
        """One group's winner, what its votes cost (votes recorded as they arrive), and
        whether the judge was asked (not for a lone candidate or an agreeing group)."""
        answers = {drawn.answer for drawn in group}
        shown = json.dumps([drawn.attempt_id for drawn in group])
        if len(group) == 1 or (self.skip_agreeing and len(answers) == 1
                               and None not in answers):
            run.record({  # an explicit bye: who advanced unjudged, and why
                "kind": "verify", "arm": group[0].arm, "answer": group[0].answer,
                "cost": 0.0, "role": "bye", "step": run.step, "comparison": comparison,
                "candidates": shown, "winner": group[0].attempt_id,
                "decided_by": "lone candidate" if len(group) == 1 else "agreeing answers",
                "tournament": number, "tournament_round": level, "event": event})
            return group[0], 0.0, False
        messages = self._messages(self.judge_prompt, run.problem,
                                  candidates=_numbered(group), numbers=_numbers(len(group)))
        outcome = await run.call(("judge", comparison), messages, self.judge, n=self.votes)
        choices = [self.parse_vote(c.text, len(group)) for c in outcome.completions]
        winner = self._winner(run, group, choices)
        decided_by = _decided_by(choices)
        cost = 0.0
        for completion, choice in zip(outcome.completions, choices, strict=True):
            voted = group[choice] if choice is not None else None
            row = run.record({
                "kind": "verify", "arm": (voted or winner).arm,
                "answer": voted.answer if voted else None,
                "cost": float(self.cost(completion)), "role": "vote", "step": run.step,
                "verifier": "judge", "comparison": comparison, "candidates": shown,
                "vote": voted.attempt_id if voted else None, "winner": winner.attempt_id,
                "decided_by": decided_by, "tournament": number, "tournament_round": level,
                "event": event,
                **completion_columns(outcome, completion)})
            cost += row["cost"]
        return winner, cost, True

    def _winner(self, run: RunState, group: Sequence[Drawn], choices: Sequence[int | None]
                ) -> Drawn:
        tally = Counter(choice for choice in choices if choice is not None)
        support = run.session.state.votes

        def rank(position: int) -> tuple[int, int, int]:
            answer = group[position].answer
            return tally[position], support.get(answer, 0) if answer is not None else 0, -position

        return group[max(range(len(group)), key=rank)]

    # ------------------------------------------------------------ STOP
    def _final(self, run: RunState) -> tuple[str | None, str | None]:
        champion: Drawn | None = run.extra.get("champion")
        if champion is None or champion.answer is None:
            return super()._final(run)
        return champion.answer, champion.text


def _scores(entrants: Sequence[Drawn], new: Sequence[Drawn], winner: Drawn,
            won: Counter[int], played: Counter[int]) -> dict[int, float]:
    """The new candidates' scores: rounds won / rounds judged (1.0 for the winner when it
    was never judged, 0.0 for another candidate never judged), then shared by answer:
    candidates with the same answer get the best score among them in this tournament
    (an agreeing group advances one of its twins unjudged; the twin left behind did not
    lose, and a score-weighted vote must not count it against its own answer)."""
    def own(drawn: Drawn) -> float:
        if played[drawn.index]:
            return won[drawn.index] / played[drawn.index]
        return float(drawn is winner)

    best: dict[Any, float] = {}
    for drawn in entrants:
        if drawn.answer is not None:
            best[drawn.answer] = max(best.get(drawn.answer, 0.0), own(drawn))
    return {drawn.index: best[drawn.answer] if drawn.answer is not None else own(drawn)
            for drawn in new}


def _decided_by(choices: Sequence[int | None]) -> str:
    """How a comparison's winner was decided (recorded on its votes): by the votes, or, on
    a tie or without any parsable vote, by the tie-breaks (more samples of the answer,
    then the earlier candidate), said so rather than passed off as the judge's choice."""
    tally = Counter(choice for choice in choices if choice is not None)
    if not tally:
        return "no parsable vote: tie-breaks (answer support, then position)"
    ranked = sorted(tally.values(), reverse=True)
    if len(ranked) > 1 and ranked[0] == ranked[1]:
        return "tied votes: tie-breaks (answer support, then position)"
    return "votes"


def comparisons_needed(entrants: int, group_size: int) -> int:
    """Judge requests of a knock-out over ``entrants`` candidates (at most; agreeing
    groups may skip theirs)."""
    total = 0
    while entrants > 1:
        full, rest = divmod(entrants, group_size)
        total += full + (rest > 1)
        entrants = full + (rest > 0)
    return total


def _numbered(group: Sequence[Drawn]) -> str:
    return "\n\n".join(f"Candidate {i}:\n{drawn.text.strip()}"
                       for i, drawn in enumerate(group, start=1))


def _numbers(count: int) -> str:
    names = [str(i) for i in range(1, count + 1)]
    return f"{', '.join(names[:-1])} or {names[-1]}"

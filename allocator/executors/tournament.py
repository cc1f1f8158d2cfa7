"""Recursive Tournament Voting (Kim et al. 2026, arXiv 2604.16529) driven by a policy.

:class:`TournamentVoting` is the executor: the policy decides each step (SAMPLE a
rollout, REFINE a wave conditioned on a workspace, VERIFY by a bracket of LLM-judge
comparisons, STOP). Its docstring gives the paper's pipeline, the actions, the scores,
the rows it records, how replay reads them and the deviations from the paper; the pure
rules (vote orders, majority, ties, ranking) are in :mod:`allocator.executors.bracket`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from allocator._aio import gather_or_cancel
from allocator.errors import ParameterError
from allocator.executors.base import Executor
from allocator.executors.bracket import (
    DEFAULT_JUDGE_PROMPT,
    DEFAULT_ROLLOUT_SUMMARY_PROMPT,
    comparison_rng,
    comparisons_needed,
    decide,
    numbered,
    numbers,
    parse_vote,
    rank,
    vote_orders,
)
from allocator.executors.run import Drawn, RunState, completion_columns

__all__ = ["DEFAULT_DISTILL_PROMPT", "DEFAULT_JUDGE_PROMPT", "DEFAULT_REFINE_PROMPT",
           "DEFAULT_ROLLOUT_SUMMARY_PROMPT", "DEFAULT_WINNERS_PROMPT", "WORKSPACES",
           "TournamentVoting", "comparisons_needed", "parse_vote"]

#: Workspace selection rules (see :class:`TournamentVoting`, REFINE).
WORKSPACES = ("summary", "top-k", "tournament")

#: The distillation prompt: fields ``question``, ``candidates``, ``count``, ``max_words``.
DEFAULT_DISTILL_PROMPT = (
    "Problem:\n{question}\n\n"
    "Below are {count} attempted solutions.\n\n{candidates}\n\n"
    "Write a summary of at most {max_words} words for someone who will solve the problem "
    "again: the approaches tried, the answers reached and how often, where the attempts "
    "disagree, and any mistakes you can see. Do not write a full solution."
)

#: The refinement prompt over a distilled workspace: fields ``question``, ``summary``,
#: ``round``.
DEFAULT_REFINE_PROMPT = (
    "Problem:\n{question}\n\n"
    "Summary of earlier attempts:\n{summary}\n\n"
    "Using the summary, solve the problem again carefully, correcting any mistakes it "
    "points out, and state the final answer at the end in the same format as asked."
)

#: The refinement prompt over selected attempts (top-k, tournament): same fields.
DEFAULT_WINNERS_PROMPT = (
    "Problem:\n{question}\n\n"
    "The strongest earlier attempts, selected by comparison:\n{summary}\n\n"
    "Building on them, solve the problem again carefully, avoiding the doubts they "
    "raise, and state the final answer at the end in the same format as asked."
)

@dataclass
class _Workspace:
    text: str
    attempt_id: str  # its summary row, held until charged
    cost: float  # the row's own call plus its selection's calls
    sources: tuple[str, ...] = ()
    charged: bool = False


@dataclass
class _Rounds:
    current: int = 0  # the refinement round in progress (0: none yet)
    filled: int = 0  # refinements of it reported
    since: int = 0  # where the next workspace's sources start in run.candidates
    workspace: _Workspace | None = None


@dataclass
class _Bracket:
    champion: Drawn
    ranking: list[Drawn]
    won: Counter[int] = field(default_factory=Counter)
    played: Counter[int] = field(default_factory=Counter)
    cost: float = 0.0


class TournamentVoting(Executor):
    """Recursive Tournament Voting (RTV) with an LLM judge, driven by a policy.

    The paper's pipeline (Kim et al. 2026, arXiv 2604.16529): ``N`` rollouts, each turned
    into a *structured summary*; a single-elimination bracket over the summaries in groups
    of ``G``, each comparison asked ``V`` times (default 8) with the candidates' positions
    randomised, the group's winner the majority of the ``V`` votes; the bracket's champion
    and its top ``K``; the top-K summaries condition a new wave of rollouts; a final
    tournament picks the answer. Here the policy decides each step.

    Actions:
        SAMPLE(arm): one more rollout.
        VERIFY: a tournament over the latest round's candidates not judged yet (plus the
            reigning champion when it belongs to that round): groups of ``group_size``,
            in the order drawn. Each candidate entering its first judged comparison gets
            one structured summary (an LLM call, recorded; reused by later tournaments
            of the run); the judge sees summaries, never raw completions
            (``summarise=False`` shows the raw texts). Each comparison is ``votes``
            judge requests, each showing the group in its own seeded order
            (:func:`~allocator.executors.bracket.vote_orders`: balanced rotations, so
            pairs are shown swapped in half the votes); the winner is the majority of
            the parsable votes; unparsable replies are abstentions, recorded as such;
            ties follow :func:`~allocator.executors.bracket.decide` (answer support,
            then a seeded draw) and every vote row says which rule decided. A lone
            candidate, and with ``skip_agreeing`` a group whose candidates share one
            answer, advance by an explicit ``bye`` row. Candidates of earlier rounds
            not judged yet are *superseded* (score 0): the answer comes from the last
            round, as in the paper.
        REFINE: one rollout of the next wave, conditioned on a *workspace*. The first
            REFINE of a round builds it from every candidate drawn since the previous
            workspace (round 1: the drafts; later rounds: the previous round's rollouts
            and any draft drawn meanwhile; the workspace does not persist across
            rounds). ``workspace="tournament"`` (RTV's recursion): a bracket over those
            candidates, run exactly as a VERIFY's, and the structured summaries of its
            top ``top_k``; ``"top-k"``: the ``top_k`` candidates whose answers most of
            them share (no call); ``"summary"``: one distillation call over all of
            them. A round holds ``width`` rollouts (an int, or one width per round).
        STOP: the last tournament's champion (:attr:`RunResult.ranking` holds its
            top-K); before any tournament, the session's vote.

    Scores:
        What :meth:`~allocator.session.Session.verify` and the ``score`` column
        receive: each new entrant gets ``rounds won / rounds judged`` in its tournament
        (the champion 1.0), shared by answer (an agreeing group advances one twin
        unjudged: the other did not lose). A reigning champion beaten (or superseded) is
        re-scored with its twins, so the session's best verified answer is always the
        executor's answer.

    Recorded rows:
        All ``kind`` verify, never candidates in replay: a ``rollout summary`` per
        summarised candidate, a ``vote`` per judge request (``abstained`` true for an
        unparsable reply), a ``bye`` per unjudged advance, one
        ``verification`` per VERIFY and one ``summary`` per workspace. A VERIFY's rows
        carry its ``event``; a workspace's selection rows carry ``workspace`` (the
        summary row's attempt id); refinements carry ``summary`` and
        ``conditioned_on``. Every row's columns: ``data/README.md``, "Logs written by
        the executors".

    Replay:
        :class:`allocator.envs.ReplayEnv` applies a VERIFY where the candidates drawn
        are exactly an event's ``drawn`` after exactly its ``after``, with its logged
        scores and the cost of every row of the event (votes and summaries); it opens
        a workspace where the candidates drawn since the previous one are exactly its
        ``conditioned_on``, charging its summary row and every row of its selection.
        The session is told a workspace's cost with its round's first refinement, as
        replay charges it.

    Deviations from the paper, and why:
        Candidates are answers to one question, so a group whose candidates agree may
        skip the judge (``skip_agreeing``; off for the paper's behaviour) and ties fall
        back on answer support before the seeded draw; a VERIFY judges only what is new
        (plus the champion), because the policy may verify after every draw and
        re-judging old candidates would pay for the same comparisons again; the summary
        and the judge are LLM calls on the executor's client (the paper uses the agent's
        own model).

    Args:
        client: the LLM client (rollouts, summaries, judge).
        arms: arm name -> request parameters.
        extract: ``text -> answer``.
        judge: request parameters of the judge (default: the first arm's).
        votes: judge requests per comparison (``V``), each with its own order.
        group_size: candidates per comparison (``G``; 2 = pairs).
        top_k: how many of a bracket's best make its top-K (``K``).
        summarise: show the judge per-rollout structured summaries (else raw texts).
        summary: request parameters of the rollout summaries (default: the judge's);
            ``max_tokens`` is set to ``summary_max_tokens``.
        summary_prompt: the rollout summary's template (fields ``question``,
            ``solution``, ``max_words``).
        judge_prompt: the judge's template (fields ``question``, ``candidates``,
            ``numbers`` and the problem's metadata).
        parse_vote: ``(reply, count) -> 0-based position shown, or None``.
        skip_agreeing: a group whose candidates share one answer advances one of them
            by a bye, without the judge.
        seed: seeds every comparison's orders and draws (with the query and label).
        workspace: how a REFINE round's workspace is built: ``"tournament"``,
            ``"top-k"`` or ``"summary"``.
        width: rollouts per refinement round (an int, or one per round, the last
            repeated); default 8 (RTV: one wave as large as the first), 4 for PDR.
        refine_arm: the arm whose parameters refinements use (default: the first).
        refine_prompt: the refinement template (fields ``question``, ``summary``,
            ``round``); default by ``workspace``.
        distill: request parameters of the distillation (default: the refine arm's).
        distill_prompt: the ``"summary"`` workspace's template (fields ``question``,
            ``candidates``, ``count``, ``max_words``).
        summary_max_tokens: ``max_tokens`` of summaries and distillations.
        summary_max_chars: a summary (and each text a workspace lists) is cut to this.
        summary_max_words: the length asked for in the prompts.
        **kwargs: the other arguments of :class:`~allocator.executors.base.Executor`
            (``max_llm_calls`` defaults to 512 here: a bracket of 8 with ``V = 8``
            alone is 56 judge requests).
    """

    name: ClassVar[str] = "rtv"
    supports_verify: ClassVar[bool] = True
    supports_refine: ClassVar[bool] = True
    holds_candidates: ClassVar[bool] = True
    default_workspace: ClassVar[str] = "tournament"
    default_width: ClassVar[int] = 8

    def __init__(self, client: Any, arms: Any, extract: Any, *,
                 judge: Mapping[str, Any] | None = None, votes: int = 8,
                 group_size: int = 2, top_k: int = 2, summarise: bool = True,
                 summary: Mapping[str, Any] | None = None,
                 summary_prompt: str = DEFAULT_ROLLOUT_SUMMARY_PROMPT,
                 judge_prompt: str = DEFAULT_JUDGE_PROMPT,
                 parse_vote: Callable[[str, int], int | None] = parse_vote,
                 skip_agreeing: bool = True, seed: int = 0, workspace: str | None = None,
                 width: int | Sequence[int] | None = None, refine_arm: str | None = None,
                 refine_prompt: str | None = None, distill: Mapping[str, Any] | None = None,
                 distill_prompt: str = DEFAULT_DISTILL_PROMPT, summary_max_tokens: int = 512,
                 summary_max_chars: int = 4000, summary_max_words: int = 200,
                 **kwargs: Any) -> None:
        kwargs.setdefault("max_llm_calls", 512)
        super().__init__(client, arms, extract, **kwargs)
        owner = type(self).__name__
        for name, value, least in (("votes", votes, 1), ("group_size", group_size, 2),
                                   ("top_k", top_k, 1), ("seed", seed, 0),
                                   ("summary_max_tokens", summary_max_tokens, 1),
                                   ("summary_max_chars", summary_max_chars, 1),
                                   ("summary_max_words", summary_max_words, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ParameterError(owner, name, f"an integer >= {least}", value)
        workspace = self.default_workspace if workspace is None else workspace
        if workspace not in WORKSPACES:
            raise ParameterError(owner, "workspace", f"one of {WORKSPACES}", workspace)
        width = self.default_width if width is None else width
        widths = (width,) if isinstance(width, int) else tuple(width)
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                             for w in widths):
            raise ParameterError(owner, "width", "an integer >= 1 or a non-empty sequence "
                                 "of them (one per round)", width)
        self.refine_arm = refine_arm if refine_arm is not None else next(iter(self.arms))
        if self.refine_arm not in self.arms:
            raise ParameterError(owner, "refine_arm", f"one of the arms {list(self.arms)}",
                                 refine_arm)
        self.judge = dict(judge) if judge is not None else dict(next(iter(self.arms.values())))
        self.votes, self.group_size, self.top_k = votes, group_size, top_k
        self.summarise, self.seed, self.workspace = bool(summarise), seed, workspace
        self.summary = {**(summary if summary is not None else self.judge),
                        "max_tokens": summary_max_tokens}
        self.summary_prompt, self.judge_prompt = summary_prompt, judge_prompt
        self.parse_vote = parse_vote
        self.skip_agreeing = bool(skip_agreeing)
        self.widths = widths
        self.refine_prompt = refine_prompt if refine_prompt is not None else (
            DEFAULT_REFINE_PROMPT if workspace == "summary" else DEFAULT_WINNERS_PROMPT)
        self.distill = {**(distill if distill is not None else self.arms[self.refine_arm]),
                        "max_tokens": summary_max_tokens}
        self.distill_prompt = distill_prompt
        self.summary_max_tokens = summary_max_tokens
        self.summary_max_chars = summary_max_chars
        self.summary_max_words = summary_max_words

    @property
    def width(self) -> int:
        """The first round's width."""
        return self.widths[0]

    def round_width(self, round_: int) -> int:
        """Rollouts in refinement round ``round_`` (1-based; the last width repeats)."""
        return self.widths[min(round_, len(self.widths)) - 1]

    # ------------------------------------------------------------ VERIFY
    async def _verify(self, run: RunState) -> bool:
        state = run.session.state
        new = [drawn for drawn in run.candidates if not state.is_verified[drawn.index]]
        latest = max((drawn.round for drawn in run.candidates), default=0)
        champion: Drawn | None = run.extra.get("champion")
        fresh = [drawn for drawn in new if drawn.round == latest]
        superseded = [drawn for drawn in new if drawn.round < latest]
        reigning = champion is not None and (champion.round == latest or not fresh)
        entrants = ([champion] if reigning and champion is not None else []) + fresh
        entrants = entrants or new  # (cannot happen: the latest round was judged)
        cache: dict[int, str] = run.extra.setdefault("verify_summaries", {})
        if self._bracket_calls(entrants, cache) > run.calls_left:
            return False
        run.extra["tournaments"] = number = run.extra.get("tournaments", 0) + 1
        run.new_wave()  # the step's own wave (its rows without a request join it)
        event = f"{run.log.run}:t{number}"
        bracket = await self._bracket(run, entrants, f"t{number}",
                                      {"event": event, "tournament": number}, cache)
        winner = bracket.champion
        scores = _scores(entrants, fresh, winner, bracket.won, bracket.played)
        scores.update({drawn.index: 0.0 for drawn in superseded})
        rescore = champion is not None and champion is not winner
        if rescore and champion is not None:  # beaten or superseded: not its old 1.0
            old = (_scores(entrants, [champion], winner, bracket.won, bracket.played)
                   [champion.index] if reigning else 0.0)
            # Nor its twins verified earlier (they shared its score): the session's best
            # verified answer must be the new champion's, as STOP returns.
            scores.update({drawn.index: old for drawn in run.candidates
                           if state.is_verified[drawn.index]
                           and drawn.answer == champion.answer})
        run.extra["champion"], run.extra["top_k"] = winner, bracket.ranking[: self.top_k]
        for drawn in new:
            run.update(drawn.attempt_id, score=scores[drawn.index])
        run.release(drawn.attempt_id for drawn in new)
        self._record_event(run, event, bracket, scores, superseded)
        run.verify(scores, bracket.cost, rescore=rescore)
        return True

    def _record_event(self, run: RunState, event: str, bracket: _Bracket,
                      scores: Mapping[int, float], superseded: Sequence[Drawn]) -> None:
        """The ``verification`` row: what this VERIFY showed the session, for replay."""
        ids = {drawn.index: drawn.attempt_id for drawn in run.candidates}
        winner = bracket.champion
        run.record({
            "kind": "verify", "arm": winner.arm, "answer": winner.answer, "cost": 0.0,
            "role": "verification", "step": run.step, "event": event,
            "after": run.extra.get("last_event"), "winner": winner.attempt_id,
            "drawn": json.dumps([drawn.attempt_id for drawn in run.candidates]),
            "scores": json.dumps({ids[index]: score for index, score in scores.items()}),
            "top_k": json.dumps([d.attempt_id for d in bracket.ranking[: self.top_k]]),
            "superseded": json.dumps([drawn.attempt_id for drawn in superseded])})
        run.extra["last_event"] = event

    # ------------------------------------------------------------ the bracket
    def _bracket_calls(self, entrants: Sequence[Drawn], cache: Mapping[int, str]) -> int:
        """The most LLM requests a bracket over ``entrants`` makes."""
        if len(entrants) < 2:
            return 0
        summaries = sum(drawn.index not in cache for drawn in entrants) if self.summarise else 0
        return comparisons_needed(len(entrants), self.group_size) * self.votes + summaries

    async def _bracket(self, run: RunState, entrants: Sequence[Drawn], label: str,
                       columns: Mapping[str, Any], cache: dict[int, str]) -> _Bracket:
        """A single-elimination bracket over ``entrants`` (groups in the order given);
        every row it records carries ``columns`` (the event, or the workspace)."""
        alive, result = list(entrants), _Bracket(entrants[0], [])
        depth: Counter[int] = Counter()
        share = {drawn.index: 0.0 for drawn in entrants}
        level = 0
        if len(alive) == 1:  # a lone entrant: champion by an explicit bye
            await self._compare(run, alive, f"{label}r1c0", 1, columns, cache)
        while len(alive) > 1:
            level += 1
            groups = [alive[i:i + self.group_size]
                      for i in range(0, len(alive), self.group_size)]
            # A level's summaries are launched together (a wave), then its votes (another)
            summaries = (run.new_wave() if self.summarise and any(
                drawn.index not in cache for drawn in alive) else None)
            waves = (summaries, run.new_wave())
            outcomes = await gather_or_cancel(
                self._compare(run, group, f"{label}r{level}c{c}", level, columns, cache,
                              waves)
                for c, group in enumerate(groups))
            for group, (winner, spent, judged, shares) in zip(groups, outcomes, strict=True):
                result.cost += spent
                share.update(shares)
                depth[winner.index] += 1
                if judged:
                    result.played.update(drawn.index for drawn in group)
                    result.won[winner.index] += 1
            alive = [winner for winner, *_ in outcomes]
        result.champion = alive[0]
        by_index = {drawn.index: drawn for drawn in entrants}
        order = [drawn.index for drawn in entrants]
        result.ranking = [by_index[i] for i in rank(order, depth, share, alive[0].index)]
        return result

    async def _compare(self, run: RunState, group: list[Drawn], label: str, level: int,
                       columns: Mapping[str, Any], cache: dict[int, str],
                       waves: tuple[int | None, int | None] = (None, None)
                       ) -> tuple[Drawn, float, bool, dict[int, float]]:
        """One group: its winner, what it cost, whether the judge was asked, and each
        member's share of the parsable votes. ``waves``: the level's waves of summaries
        and of votes (None: new ones)."""
        answers = {drawn.answer for drawn in group}
        ids = json.dumps([drawn.attempt_id for drawn in group])
        if len(group) == 1 or (self.skip_agreeing and len(answers) == 1
                               and None not in answers):
            run.record({  # an explicit bye: who advanced unjudged, and why
                "kind": "verify", "arm": group[0].arm, "answer": group[0].answer,
                "cost": 0.0, "role": "bye", "step": run.step, "comparison": label,
                "candidates": ids, "winner": group[0].attempt_id,
                "decided_by": "lone candidate" if len(group) == 1 else "agreeing answers",
                "tournament_round": level, **columns})
            return group[0], 0.0, False, {drawn.index: 1.0 for drawn in group}
        texts, spent = await self._judge_texts(run, group, columns, cache, waves[0])
        parent = self._waited_on(run, group)
        vote_wave = run.new_wave() if waves[1] is None else waves[1]
        rng = comparison_rng(self.seed, run.problem.query_id, label)
        cast = await gather_or_cancel(
            self._vote(run, group, texts, order, label, level, columns, vote_wave, parent)
            for order in vote_orders(len(group), self.votes, rng))
        choices = [choice for choice, _, _ in cast]
        support = [run.session.state.votes.get(drawn.answer, 0)
                   if drawn.answer is not None else 0 for drawn in group]
        position, decided_by = decide(choices, support, rng)
        winner = group[position]
        tally = Counter(choice for choice in choices if choice is not None)
        counted = sum(tally.values())
        for _, attempt_id, _ in cast:
            run.update(attempt_id, winner=winner.attempt_id, decided_by=decided_by,
                       tally=json.dumps({group[p].attempt_id: tally[p]
                                         for p in range(len(group))}))
        run.release(attempt_id for _, attempt_id, _ in cast)
        shares = {drawn.index: tally[p] / counted if counted else 0.0
                  for p, drawn in enumerate(group)}
        return winner, spent + sum(cost for *_, cost in cast), True, shares

    def _waited_on(self, run: RunState, group: Sequence[Drawn]) -> str | None:
        """The attempt a comparison's votes waited on: the group's structured summary that
        ended last (the judge reads summaries), else the member drawn last."""
        rows: dict[int, tuple[float, str]] = run.extra.get("summary_rows", {})
        made = [rows[drawn.index] for drawn in group if drawn.index in rows]
        if self.summarise and made:
            return max(made)[1]
        return max(group, key=lambda drawn: drawn.index).attempt_id

    async def _vote(self, run: RunState, group: list[Drawn], texts: Sequence[str],
                    order: Sequence[int], label: str, level: int,
                    columns: Mapping[str, Any], wave: int | None = None,
                    parent: str | None = None) -> tuple[int | None, str, float]:
        """One judge request showing ``group`` in ``order``: the group position it voted
        for (None: abstained), its row (held until the comparison is decided), cost."""
        messages = self._messages(self.judge_prompt, run.problem,
                                  candidates=numbered([texts[p] for p in order]),
                                  numbers=numbers(len(group)))
        outcome = await run.call(("judge", label), messages, self.judge, wave=wave)
        completion = outcome.completions[0]
        picked = self.parse_vote(completion.text, len(group))
        choice = None if picked is None else order[picked]
        voted = None if choice is None else group[choice]
        row = run.record({
            "kind": "verify", "arm": (voted or group[0]).arm,
            "answer": voted.answer if voted else None, "cost": float(self.cost(completion)),
            "role": "vote", "step": run.step, "verifier": "judge", "comparison": label,
            "candidates": json.dumps([drawn.attempt_id for drawn in group]),
            "shown": json.dumps([group[p].attempt_id for p in order]),
            "vote": voted.attempt_id if voted else None, "abstained": voted is None,
            "winner": None, "decided_by": None, "tournament_round": level, **columns,
            "parent": parent, **completion_columns(outcome, completion)}, hold=True)
        return choice, row["attempt_id"], float(row["cost"])

    async def _judge_texts(self, run: RunState, group: Sequence[Drawn],
                           columns: Mapping[str, Any], cache: dict[int, str],
                           wave: int | None = None) -> tuple[list[str], float]:
        """What the judge sees of each member (its structured summary, made once per
        cache), and what the summaries made now cost (in ``wave``; None: a new one)."""
        if not self.summarise:
            return [drawn.text for drawn in group], 0.0
        missing = [drawn for drawn in group if drawn.index not in cache]
        if missing and wave is None:
            wave = run.new_wave()
        costs = await gather_or_cancel(
            self._summarise_rollout(run, drawn, columns, cache, wave) for drawn in missing)
        return [cache[drawn.index] for drawn in group], sum(costs)

    async def _summarise_rollout(self, run: RunState, drawn: Drawn,
                                 columns: Mapping[str, Any], cache: dict[int, str],
                                 wave: int | None = None) -> float:
        messages = self._messages(self.summary_prompt, run.problem, solution=drawn.text,
                                  max_words=self.summary_max_words)
        outcome = await run.call(("rollout summary", drawn.attempt_id), messages,
                                 self.summary, wave=wave)
        completion = outcome.completions[0]
        cache[drawn.index] = completion.text.strip()[: self.summary_max_chars]
        cost = float(self.cost(completion))
        row = run.record({"kind": "verify", "arm": drawn.arm, "answer": None, "cost": cost,
                          "role": "rollout summary", "step": run.step,
                          "summarises": drawn.attempt_id, **columns,
                          "parent": drawn.attempt_id,
                          **completion_columns(outcome, completion)})
        run.extra.setdefault("summary_rows", {})[drawn.index] = (outcome.ended_at,
                                                                 row["attempt_id"])
        return cost

    # ------------------------------------------------------------ REFINE
    async def _refine(self, run: RunState) -> bool:
        rounds: _Rounds = run.extra.setdefault("rounds", _Rounds())
        if rounds.workspace is None or rounds.filled >= self.round_width(rounds.current):
            sources = run.candidates[rounds.since:]
            if self._workspace_calls(sources) + 1 > run.calls_left:
                return False  # no room for the workspace and one refinement
            workspace = await self._open_workspace(run, rounds.current + 1, sources)
            rounds.current, rounds.filled = rounds.current + 1, 0
            rounds.since, rounds.workspace = len(run.candidates), workspace
        workspace, round_, arm = rounds.workspace, rounds.current, self.refine_arm
        key = ("refine", round_)
        conditioned = json.dumps(list(workspace.sources))
        self._top_up(run, key, lambda: self._messages(
            self.refine_prompt, run.problem, summary=workspace.text, round=round_),
            self.arms[arm], limit=self.round_width(round_) - rounds.filled,
            info={"round": round_, "arm": arm, "summary": workspace.attempt_id,
                  "conditioned_on": conditioned})
        if not run.inflight.available(key):
            return False
        outcome = await run.inflight.take(key)
        first = not workspace.charged
        drawn = self._report(run, outcome, kind="refine", arm=arm, round_=round_,
                             extra_cost=workspace.cost if first else 0.0,
                             extra={"summary": workspace.attempt_id,
                                    "conditioned_on": conditioned,
                                    "parent": workspace.attempt_id})
        rounds.filled += 1
        if first:
            workspace.charged = True
            run.update(workspace.attempt_id, charged_to=drawn.attempt_id)
            run.release([workspace.attempt_id])
        return True

    def _workspace_calls(self, sources: Sequence[Drawn]) -> int:
        if not sources or self.workspace == "top-k":
            return 0
        if self.workspace == "summary":
            return 1
        return self._bracket_calls(sources, {})

    async def _open_workspace(self, run: RunState, round_: int, sources: Sequence[Drawn]
                              ) -> _Workspace:
        """Round ``round_``'s workspace over ``sources`` (its ``summary`` row is held
        until the round's first refinement, which it is charged to)."""
        if not sources:  # sessions mask REFINE until a draft exists
            raise ParameterError(f"{type(self).__name__}.arun", "session",
                                 "a session that masks REFINE until a draft was drawn "
                                 "(a workspace needs a candidate to distil)", None)
        ids = tuple(drawn.attempt_id for drawn in sources)
        row = run.record({
            "kind": "verify", "arm": self.refine_arm, "round": round_, "answer": None,
            "cost": 0.0, "call_cost": 0.0, "charged_to": None, "role": "summary",
            "workspace_mode": self.workspace, "step": run.step, "sources": len(sources),
            "conditioned_on": json.dumps(ids)}, hold=True)
        workspace_id = row["attempt_id"]
        if self.workspace == "summary":
            text, own = await self._distil(run, workspace_id, round_, sources)
            return _Workspace(text, workspace_id, own, ids)
        if self.workspace == "top-k":
            chosen = _top_by_support(sources, self.top_k)
            selection_cost = 0.0
            texts = [drawn.text.strip()[: self.summary_max_chars] for drawn in chosen]
        else:
            cache: dict[int, str] = {}
            bracket = await self._bracket(run, sources, f"w{round_}",
                                          {"workspace": workspace_id}, cache)
            chosen, selection_cost = bracket.ranking[: self.top_k], bracket.cost
            texts = [cache.get(drawn.index, drawn.text.strip()[: self.summary_max_chars])
                     for drawn in chosen]
        run.update(workspace_id, selected=json.dumps([drawn.attempt_id for drawn in chosen]))
        return _Workspace(numbered(texts, "Attempt"), workspace_id, selection_cost, ids)

    async def _distil(self, run: RunState, workspace_id: str, round_: int,
                      sources: Sequence[Drawn]) -> tuple[str, float]:
        messages = self._messages(
            self.distill_prompt, run.problem,
            candidates=numbered([drawn.text for drawn in sources], "Attempt"),
            count=len(sources), max_words=self.summary_max_words)
        outcome = await run.call(("distill", round_), messages, self.distill)
        completion = outcome.completions[0]
        cost = float(self.cost(completion))
        run.update(workspace_id, cost=cost, call_cost=cost,
                   selected=json.dumps([drawn.attempt_id for drawn in sources]),
                   parent=sources[-1].attempt_id, **completion_columns(outcome, completion))
        return completion.text.strip()[: self.summary_max_chars], cost

    # ------------------------------------------------------------ STOP
    def _final(self, run: RunState) -> tuple[str | None, str | None]:
        champion: Drawn | None = run.extra.get("champion")
        if champion is None or champion.answer is None:
            return super()._final(run)
        return champion.answer, champion.text


def _top_by_support(sources: Sequence[Drawn], k: int) -> list[Drawn]:
    """The ``k`` sources whose answers most sources share (ties: the order drawn), at
    most one per answer first, then the rest in the same order."""
    support = Counter(drawn.answer for drawn in sources if drawn.answer is not None)
    ranked = sorted(range(len(sources)),
                    key=lambda i: (-support.get(sources[i].answer, 0), i))
    seen: set[str | None] = set()
    first, rest = [], []
    for i in ranked:
        answer = sources[i].answer
        (rest if answer in seen else first).append(sources[i])
        seen.add(answer)
    return (first + rest)[:k]


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

"""The pure parts of Recursive Tournament Voting: prompts, vote parsing, the orders each
vote is shown, the majority rule with its tie rule, and the ranking a bracket yields.

:class:`~allocator.executors.TournamentVoting` runs the LLM calls; everything here is a
function of its arguments (randomness comes in as a seeded generator), so the rules can
be tested on their own: :func:`vote_orders` gives the orders, :func:`decide` the
majority and tie rule, :func:`rank` the ranking.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["DEFAULT_JUDGE_PROMPT", "DEFAULT_ROLLOUT_SUMMARY_PROMPT", "comparison_rng",
           "comparisons_needed", "decide", "numbered", "numbers", "parse_vote", "rank",
           "vote_orders"]

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

#: The per-rollout structured summary: fields ``question``, ``solution``, ``max_words``.
DEFAULT_ROLLOUT_SUMMARY_PROMPT = (
    "Problem:\n{question}\n\n"
    "An attempted solution follows.\n\n{solution}\n\n"
    "Summarise this attempt in at most {max_words} words for a reviewer who will compare "
    "it with other attempts, under exactly these headings:\n"
    "Approach: the method it used.\n"
    "Key steps: the intermediate results it relied on.\n"
    "Checks: what it verified, and how.\n"
    "Doubts: steps that look wrong or unverified.\n"
    "Final answer: its final answer, as it states it."
)

_VOTE = re.compile(r"best\W{0,3}(?:candidate\W{0,3})?(\d+)", re.IGNORECASE)


def parse_vote(text: str, count: int) -> int | None:
    """The position a judge's reply votes for (0-based, in the order it was shown), or
    None (an abstention).

    Reads the last ``Best: <n>`` (1-based) in the reply, else a reply that is only a
    number; a number outside ``1..count`` is an abstention.
    """
    found = _VOTE.findall(text)
    number = found[-1] if found else text.strip().rstrip(".")
    if not number.isdigit():
        return None
    choice = int(number) - 1
    return choice if 0 <= choice < count else None


def comparison_rng(seed: int, query_id: str, label: str) -> np.random.Generator:
    """The generator of one comparison: a function of the executor's seed, the query and
    the comparison's label only (so runs are reproducible and comparisons independent)."""
    digest = hashlib.sha256(f"{seed}|{query_id}|{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def vote_orders(size: int, votes: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """The order each of ``votes`` votes shows a group of ``size`` (positions of the
    group, first shown first): balanced rotations of a random base order.

    A comparison of ``m`` candidates asks the judge ``V`` times, each time with its own
    order: a random base permutation of the group, rotated by ``v mod m`` for vote ``v``,
    the rotations dealt to the votes in a random sequence. Every candidate is shown in
    every position equally often when ``m`` divides ``V`` (pairs with ``V = 8``: four
    votes see ``A, B`` and four ``B, A``), so a judge that always names the first
    position splits its votes evenly and decides nothing.
    """
    base = rng.permutation(size).tolist()
    shifts = rng.permutation([v % size for v in range(votes)]).tolist()
    return [tuple(base[(i + shift) % size] for i in range(size)) for shift in shifts]


def decide(choices: Sequence[int | None], support: Sequence[int],
           rng: np.random.Generator) -> tuple[int, str]:
    """The winner of one comparison (a group position) and the rule that decided it.

    The winner has the most votes among the parsable ones; an unparsable reply is an
    *abstention* (recorded, counted, never a vote). Tie rule (also when every vote
    abstained): the candidate whose answer more of the run's rollouts share, then a
    seeded draw.

    Args:
        choices: per vote, the group position voted for (None: an abstention).
        support: per group position, how many of the run's rollouts share its answer.
        rng: the comparison's generator (the last tie-break).

    Returns:
        ``(position, decided_by)``, ``decided_by`` one of ``"majority"``, ``"tie: answer
        support"``, ``"tie: seeded draw"``, ``"no parsable vote: answer support"``,
        ``"no parsable vote: seeded draw"``.
    """
    tally = Counter(choice for choice in choices if choice is not None)
    positions = range(len(support))
    most = max((tally[p] for p in positions), default=0)
    tied = [p for p in positions if tally[p] == most]
    prefix = "tie" if tally else "no parsable vote"
    if len(tied) == 1:
        return tied[0], "majority"
    best = max(support[p] for p in tied)
    backed = [p for p in tied if support[p] == best]
    if len(backed) == 1:
        return backed[0], f"{prefix}: answer support"
    return backed[int(rng.integers(len(backed)))], f"{prefix}: seeded draw"


def rank(order: Sequence[int], depth: Mapping[int, int], share: Mapping[int, float],
         champion: int) -> list[int]:
    """Entrants (indices) best first: the champion, then by rounds survived, then by the
    share of parsable votes won in the comparison that eliminated them, then by entry
    order. The first ``K`` are the bracket's top-K."""
    rest = sorted((i for i in order if i != champion),
                  key=lambda i: (-depth[i], -share[i], order.index(i)))
    return [champion, *rest]


def comparisons_needed(entrants: int, group_size: int) -> int:
    """Judged comparisons of a knock-out over ``entrants`` candidates (at most: agreeing
    groups may skip theirs)."""
    total = 0
    while entrants > 1:
        full, rest = divmod(entrants, group_size)
        total += full + (rest > 1)
        entrants = full + (rest > 0)
    return total


def numbered(texts: Sequence[str], label: str = "Candidate") -> str:
    """``Candidate 1:\\n...`` blocks, in the order given."""
    return "\n\n".join(f"{label} {i}:\n{text.strip()}" for i, text in enumerate(texts, 1))


def numbers(count: int) -> str:
    """``"1 or 2"``, ``"1, 2 or 3"``..."""
    names = [str(i) for i in range(1, count + 1)]
    return f"{', '.join(names[:-1])} or {names[-1]}"

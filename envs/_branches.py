"""What replay needs to draw refinements and apply tournament verifications exactly.

:class:`Branches` holds a log's refinement *workspaces* (REFINE) and tournament *events*
(VERIFY), built by :func:`build_branches` when
:meth:`allocator.envs.pools.ReplayPools.from_log` lays out the candidates. Its docstring
gives the rules replay follows to draw and apply them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from allocator.logs.schema import KIND_REFINE, KIND_VERIFY
from allocator.logs.table import AttemptLog

__all__ = ["KEY_SEED", "Branches", "add_key", "build_branches", "tournament_queries",
           "workspace_keys"]

#: Seed of the candidates' signature keys.
KEY_SEED = 0x5EED
_MASK = (1 << 64) - 1
TOURNAMENT_ROLES = ("vote", "bye", "verification")


def add_key(signature: int, key: int) -> int:
    """A set signature with one more member (Python ints; numpy uint64 wraps alike)."""
    return (signature + key) & _MASK


@dataclass(frozen=True, eq=False)
class Branches:
    """Workspaces and events of a log: what replay draws on REFINE and applies on VERIFY.

    Workspaces (REFINE). The refinements of a query are grouped by *workspace*: the
    summary they were conditioned on (the executors' ``summary`` column). A workspace
    ``w`` says what it distilled (``conditioned_on``): either drafts (it *follows*
    nothing, ``ws_prev[w] = -1``) or the refinements of one earlier workspace
    (``ws_prev[w]``). Replay offers REFINE only where a refinement the live executor
    would have produced is logged:

    - while the workspace in use has refinements left, REFINE draws the next one of it
      (a round's refinements share one summary, whatever was drawn since);
    - otherwise REFINE opens the workspace that follows the one in use (none yet: one
      that follows nothing) *and* whose sources are exactly the candidates the live
      executor would have distilled: every candidate drawn since the workspace in use
      was opened (round 1: every draft drawn so far; later rounds: the refinements drawn
      from the workspace in use and the drafts drawn meanwhile). Opening it charges its
      summary row's logged cost and that of every row of its selection (rows whose
      ``workspace`` names the summary row: a tournament's votes and rollout summaries).

    A *free* workspace (refinement rows of a simulated log, which have no ``summary``:
    the simulator's refinements depend on no particular draft) matches on the order of
    rounds alone, once a draft was drawn. Refinements of a real log without ``summary`` /
    ``conditioned_on`` (logs written before the executors recorded them) are never
    drawn: REFINE is masked for them and :attr:`notes` says so.

    Events (VERIFY on tournament logs). A tournament's scores depend on the opponents
    drawn, so candidates of a query with tournament rows carry no independent score in
    replay. Instead each ``verification`` row is an *event*: the candidates the session
    held (``drawn``), the event before it in its run (``after``) and the scores the
    session received (``scores``). VERIFY applies an event where the candidates drawn
    are exactly its ``drawn`` and the last event applied is its ``after``; the state
    after it (verified count, best score per answer, score sums) is precomputed along
    the chain of events, and it costs the logged cost of its votes.

    Latency (timed logs: ``started_at`` / ``ended_at``). Opening a workspace adds its
    summary's and its selection's durations, one after the other (``ws_latency``: they
    ran before the refinement); a verification lasts the span of the logged rows it
    charges (``cand_verify_start`` / ``cand_verify_end`` per candidate's verdicts,
    ``ev_start`` / ``ev_end`` per event's votes: earliest start, latest end; ``+inf`` /
    ``-inf`` where none, NaN where a charged row is untimed).

    Sets are compared by a 64-bit signature, the sum modulo 2**64 of one random key per
    candidate (fixed seed, :data:`KEY_SEED`), together with their sizes: two different
    sets of the same size collide with probability 2**-64.

    Layout. Workspaces of query ``q`` are ``ws_offsets[q]:ws_offsets[q + 1]``; workspace
    ``w`` of ``q`` is the candidate group ``A + (w - ws_offsets[q])``. Events of ``q``
    are ``ev_offsets[q]:ev_offsets[q + 1]``. ``ev_prev`` and ``ws_prev`` are global
    indices (-1: none). Per-answer arrays are indexed by the query-local answer code.

    Attributes:
        cand_key: signature key per candidate, uint64 (C,).
        cand_verify_cost: logged cost of verifying the candidate (its verdict rows), NaN
            where the log has no verdict for it (C,).
        ws_offsets, ws_ok, ws_free, ws_prev, ws_sig, ws_nsrc, ws_cost, ws_count: per
            workspace: usable, free (simulated), the workspace it follows, its sources'
            signature and size, its summary's cost, its refinements.
        ev_offsets, ev_ok, ev_prev, ev_sig, ev_n, ev_cost: per event: usable, the event
            it follows, the drawn set's signature and size, the cost of its votes.
        ev_verified, ev_best, ev_sum: the state after the event (verified candidates;
            best score and score sum per answer, -inf / 0 where none).
        ev_score_offsets, ev_score_pos, ev_score_val: the event's scores (query-local
            candidate positions and values), CSR.
        notes: what the log cannot replay exactly, and is therefore masked.
        ws_latency: per workspace, the summed durations of its summary and selection rows
            (seconds; NaN where one is untimed).
        cand_verify_start, cand_verify_end: per candidate, the earliest start and latest
            end of its verdict rows (``+inf`` / ``-inf`` without any).
        ev_start, ev_end: per event, the earliest start and latest end of its votes.
    """

    cand_key: np.ndarray
    cand_verify_cost: np.ndarray
    ws_offsets: np.ndarray
    ws_ok: np.ndarray
    ws_free: np.ndarray
    ws_prev: np.ndarray
    ws_sig: np.ndarray
    ws_nsrc: np.ndarray
    ws_cost: np.ndarray
    ws_count: np.ndarray
    ev_offsets: np.ndarray
    ev_ok: np.ndarray
    ev_prev: np.ndarray
    ev_sig: np.ndarray
    ev_n: np.ndarray
    ev_cost: np.ndarray
    ev_verified: np.ndarray
    ev_best: np.ndarray
    ev_sum: np.ndarray
    ev_score_offsets: np.ndarray
    ev_score_pos: np.ndarray
    ev_score_val: np.ndarray
    notes: tuple[str, ...]
    ws_latency: np.ndarray
    cand_verify_start: np.ndarray
    cand_verify_end: np.ndarray
    ev_start: np.ndarray
    ev_end: np.ndarray

    @property
    def timed(self) -> bool:
        """Whether every row replay charges latency for is timed (no NaN)."""
        return not any(np.isnan(values).any() for values in (
            self.ws_latency[self.ws_ok], self.cand_verify_start, self.cand_verify_end,
            self.ev_start[self.ev_ok], self.ev_end[self.ev_ok]))

    @property
    def has_workspaces(self) -> bool:
        """Whether any workspace can be opened."""
        return bool(self.ws_ok.any())

    @property
    def has_events(self) -> bool:
        """Whether any event can be applied."""
        return bool(self.ev_ok.any())

    @cached_property
    def lists(self) -> dict[str, list[Any]]:
        """The per-workspace and per-event arrays as Python lists (the single env's
        scalar lookups)."""
        names = ("cand_key", "ws_ok", "ws_free", "ws_prev", "ws_sig", "ws_nsrc", "ws_cost",
                 "ws_count", "ev_ok", "ev_prev", "ev_sig", "ev_n", "ev_cost", "ev_verified",
                 "ws_latency", "cand_verify_start", "cand_verify_end", "ev_start", "ev_end")
        return {name: getattr(self, name).tolist() for name in names}

    def padded(self, offsets: np.ndarray) -> np.ndarray:
        """Per query, its workspaces (or events) as global indices, padded with -1."""
        counts = np.diff(offsets)
        width = int(counts.max(initial=0))
        table = np.full((len(counts), width), -1, dtype=np.int64)
        slot = np.arange(int(counts.sum())) - np.repeat(offsets[:-1], counts)
        table[np.repeat(np.arange(len(counts)), counts), slot] = np.arange(int(counts.sum()))
        return table


# ---------------------------------------------------------------------- reading
def _strings(log: AttemptLog, name: str) -> np.ndarray:
    """An extra column as an object array of str / None (None where absent)."""
    values = log.extra.get(name)
    if values is None:
        return np.full(log.n_attempts, None, dtype=object)
    out = np.full(len(values), None, dtype=object)
    for i, value in enumerate(values.tolist()):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[i] = str(value)
    return out


def workspace_keys(log: AttemptLog) -> tuple[np.ndarray, np.ndarray]:
    """Each refinement row's workspace key and whether the key is a logged summary.

    Returns:
        (key, logged): object array of str per attempt (None for non-refinements); bool
        array, True where the refinement names its summary and what it distilled.
    """
    summary, conditioned = _strings(log, "summary"), _strings(log, "conditioned_on")
    refine = log.kind == KIND_REFINE
    logged = refine & (summary != None) & (conditioned != None)  # noqa: E711
    key = np.full(log.n_attempts, None, dtype=object)
    for row in np.flatnonzero(refine).tolist():
        key[row] = (f"s:{summary[row]}" if logged[row]
                    else f"r:{int(log.round[row]):09d}")
    return key, logged


# ---------------------------------------------------------------------- building
def build_branches(log: AttemptLog, cand_row: np.ndarray, cand_query: np.ndarray,
                   cand_answer: np.ndarray, group_count: np.ndarray, n_arms: int,
                   ws_keys: list[list[str]], width: int) -> Branches:
    """The workspaces and events of a log whose candidates are laid out as given.

    Args:
        log: the log.
        cand_row, cand_query, cand_answer: the candidates' rows, queries and local answers
            in the pools' order.
        group_count: candidates per query and group.
        n_arms: ``A``.
        ws_keys: per query, its workspace keys in group order.
        width: the widest query's number of distinct answers.
    """
    offsets = np.concatenate([[0], np.cumsum(np.bincount(cand_query,
                                                         minlength=log.n_queries))])
    key = np.random.default_rng(KEY_SEED).integers(0, 2**63, size=len(cand_row),
                                                   dtype=np.int64).astype(np.uint64) * 2 + 1
    ids: dict[tuple[int, str], int] = {}
    attempt_id = log.attempt_id
    for position, (row, query) in enumerate(zip(cand_row.tolist(), cand_query.tolist(),
                                                strict=True)):
        ids[(query, str(attempt_id[row]))] = position
    notes: list[str] = []
    ws = _workspaces(log, cand_row, cand_query, offsets, group_count, n_arms, ws_keys, key,
                     ids, notes)
    tournament = tournament_queries(log)
    ev = _events(log, cand_answer, offsets, key, ids, tournament, width, notes)
    verify_cost, verify_start, verify_end = _verdict_costs(log, cand_row.size, ids)
    return Branches(cand_key=key, cand_verify_cost=verify_cost, **ws, **ev,
                    notes=tuple(notes), cand_verify_start=verify_start,
                    cand_verify_end=verify_end)


def _workspaces(log: AttemptLog, cand_row: np.ndarray, cand_query: np.ndarray,
                offsets: np.ndarray, group_count: np.ndarray, n_arms: int,
                ws_keys: list[list[str]], key: np.ndarray, ids: dict[tuple[int, str], int],
                notes: list[str]) -> dict[str, np.ndarray]:
    """Per workspace: usable, free, predecessor, sources' signature and size, cost."""
    conditioned = _strings(log, "conditioned_on")
    summary_cost = _summary_sums(log, log.cost)
    summary_latency = _summary_sums(log, log.duration)
    counts = [len(keys) for keys in ws_keys]
    ws_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(ws_offsets[-1])
    ok, free = np.zeros(total, bool), np.zeros(total, bool)
    prev, nsrc = np.full(total, -1, np.int64), np.zeros(total, np.int64)
    sig, cost = np.zeros(total, np.uint64), np.zeros(total)
    latency = np.zeros(total)
    count = np.zeros(total, np.int64)
    group_of = {}  # candidate position -> global workspace
    masked = 0
    for query, keys in enumerate(ws_keys):
        for rank in range(len(keys)):
            w = int(ws_offsets[query]) + rank
            count[w] = group_count[query, n_arms + rank]
            start = int(offsets[query]) + int(group_count[query, :n_arms + rank].sum())
            for position in range(start, start + int(count[w])):
                group_of[position] = w
    for query, keys in enumerate(ws_keys):
        for rank, name in enumerate(keys):
            w = int(ws_offsets[query]) + rank
            start = int(offsets[query]) + int(group_count[query, :n_arms + rank].sum())
            if name.startswith("r:"):
                if log.simulated:
                    ok[w] = free[w] = True
                    prev[w] = w - 1 if rank > 0 and ws_keys[query][rank - 1].startswith(
                        "r:") else -1
                else:
                    masked += int(count[w])
                continue
            sources = json.loads(conditioned[cand_row[start]])
            positions = [ids.get((query, str(source))) for source in sources]
            if not positions or any(p is None for p in positions):
                masked += int(count[w])
                continue
            refined = [p for p in positions if int(log.kind[cand_row[p]]) == KIND_REFINE]
            parents = {group_of.get(p, -1) for p in refined}
            if not refined:
                prev[w] = -1
            elif len(parents) == 1:  # a round's refinements, and drafts drawn meanwhile
                prev[w] = parents.pop()
            else:
                masked += int(count[w])
                continue
            ok[w] = count[w] > 0
            nsrc[w] = len(positions)
            signature = 0
            for p in positions:
                signature = add_key(signature, int(key[p]))
            sig[w] = signature
            cost[w] = summary_cost.get((int(cand_query[start]), name[2:]), 0.0)
            latency[w] = summary_latency.get((int(cand_query[start]), name[2:]), 0.0)
    if masked:
        notes.append(f"{masked} refinement rows do not say what they were conditioned on "
                     "('summary' and 'conditioned_on', written by the executors since "
                     "replay became exact) or name attempts the log lacks: replay never "
                     "draws them (REFINE is masked there, not simulated).")
    return {"ws_offsets": ws_offsets, "ws_ok": ok & (count > 0), "ws_free": free,
            "ws_prev": prev, "ws_sig": sig, "ws_nsrc": nsrc, "ws_cost": cost,
            "ws_count": count, "ws_latency": latency}


def _summary_sums(log: AttemptLog, values: np.ndarray) -> dict[tuple[int, str], float]:
    """(query, summary attempt id) -> what opening the workspace cost (``values``: the
    log's costs) or lasted (its durations): its summary row's value plus that of every row
    of its selection (``workspace`` = its id), added in log order."""
    role, workspace = _strings(log, "role"), _strings(log, "workspace")
    query = log.attempt_query
    verify = log.kind == KIND_VERIFY
    costs = {(int(query[row]), str(log.attempt_id[row])): float(values[row])
             for row in np.flatnonzero(verify & (role == "summary"))}
    for row in np.flatnonzero(verify & (workspace != None)).tolist():  # noqa: E711
        name = (int(query[row]), str(workspace[row]))
        if name in costs:
            costs[name] += float(values[row])
    return costs


def _times(log: AttemptLog) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``started_at`` and ``ended_at`` in seconds (NaN where the log has none)."""
    if "started_at" not in log.extra or "ended_at" not in log.extra:
        nan = np.full(log.n_attempts, np.nan)
        return nan, nan
    return (np.asarray(log.extra["started_at"], dtype=np.float64),
            np.asarray(log.extra["ended_at"], dtype=np.float64))


def _spans(groups: np.ndarray, rows: np.ndarray, size: int, start: np.ndarray,
           end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group ``0..size-1``, the earliest start and latest end of its ``rows``
    (``+inf`` / ``-inf`` for a group without rows; NaN propagates)."""
    first, last = np.full(size, np.inf), np.full(size, -np.inf)
    with np.errstate(invalid="ignore"):  # NaN: an untimed row, kept as NaN
        np.minimum.at(first, groups, start[rows])
        np.maximum.at(last, groups, end[rows])
    return first, last


def tournament_queries(log: AttemptLog) -> np.ndarray:
    """Whether each query has tournament rows (its candidates' scores are relative)."""
    role = _strings(log, "role")
    rows = np.isin(role.astype(str), TOURNAMENT_ROLES) & (log.kind == KIND_VERIFY)
    return np.bincount(log.attempt_query[rows], minlength=log.n_queries) > 0


def _verdict_costs(log: AttemptLog, n_candidates: int, ids: dict[tuple[int, str], int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate, the summed cost of the verify rows that target it (NaN: none), and
    their earliest start and latest end (:func:`_spans`)."""
    target = _strings(log, "target")
    cost = np.full(n_candidates, np.nan)
    query = log.attempt_query
    positions, rows = [], []
    for row in np.flatnonzero((log.kind == KIND_VERIFY) & (target != None)).tolist():  # noqa: E711
        position = ids.get((int(query[row]), str(target[row])))
        if position is not None:
            previous = 0.0 if np.isnan(cost[position]) else cost[position]
            cost[position] = previous + float(log.cost[row])
            positions.append(position)
            rows.append(row)
    start, end = _spans(np.array(positions, dtype=np.int64), np.array(rows, dtype=np.int64),
                        n_candidates, *_times(log))
    return cost, start, end


def _events(log: AttemptLog, cand_answer: np.ndarray, offsets: np.ndarray,
            key: np.ndarray, ids: dict[tuple[int, str], int], tournament: np.ndarray,
            width: int, notes: list[str]) -> dict[str, np.ndarray]:
    """The verification events, grouped by query in log order, with their outcomes."""
    role, event_id = _strings(log, "role"), _strings(log, "event")
    after, drawn, scores = (_strings(log, name) for name in ("after", "drawn", "scores"))
    query = log.attempt_query
    is_verify = log.kind == KIND_VERIFY
    vote_cost: dict[tuple[int, str], float] = {}
    vote_rows: dict[tuple[int, str], list[int]] = {}
    for row in np.flatnonzero(is_verify & (event_id != None) & (role != "verification")  # noqa: E711
                              ).tolist():
        name = (int(query[row]), str(event_id[row]))
        vote_cost[name] = vote_cost.get(name, 0.0) + float(log.cost[row])
        vote_rows.setdefault(name, []).append(row)
    rows = np.flatnonzero(is_verify & (role == "verification") & (event_id != None))  # noqa: E711
    rows = rows[np.argsort(query[rows], kind="stable")]
    ev_offsets = np.concatenate([[0], np.cumsum(np.bincount(query[rows],
                                                            minlength=log.n_queries))])
    total = len(rows)
    ok, prev = np.zeros(total, bool), np.full(total, -1, np.int64)
    sig, size, cost = np.zeros(total, np.uint64), np.zeros(total, np.int64), np.zeros(total)
    verified = np.zeros(total, np.int64)
    best, sums = np.full((total, width), -np.inf), np.zeros((total, width))
    score_pos: list[list[int]] = [[] for _ in range(total)]
    score_val: list[list[float]] = [[] for _ in range(total)]
    chain: dict[int, dict[int, float]] = {}
    index: dict[tuple[int, str], int] = {}
    span_event: list[int] = []
    span_rows: list[int] = []
    for e, row in enumerate(rows.tolist()):
        q = int(query[row])
        index[(q, str(event_id[row]))] = e
        parsed = _parse_event(q, drawn[row], scores[row], ids)
        parent = -1 if after[row] is None else index.get((q, str(after[row])), -2)
        if parsed is None or parent == -2 or (parent >= 0 and not ok[parent]):
            continue
        members, assigned = parsed
        ok[e], prev[e] = True, parent
        signature = 0
        for p in members:
            signature = add_key(signature, int(key[p]))
        sig[e], size[e] = signature, len(members)
        cost[e] = vote_cost.get((q, str(event_id[row])), 0.0)
        charged = vote_rows.get((q, str(event_id[row])), [])
        span_event += [e] * len(charged)
        span_rows += charged
        state = {**chain.get(parent, {}), **assigned}
        chain[e] = state
        verified[e] = len(state)
        for p in sorted(state):
            answer, value = int(cand_answer[p]), state[p]
            if answer >= 0 and not math.isnan(value):
                best[e, answer] = max(best[e, answer], value)
                sums[e, answer] += value
        local = int(offsets[q])
        score_pos[e] = [p - local for p in assigned]
        score_val[e] = list(assigned.values())
    bad = total - int(ok.sum())
    if bad:
        notes.append(f"{bad} verification rows name attempts (or an earlier event) the log "
                     "lacks: replay never applies them.")
    bare = int((tournament & (np.diff(ev_offsets) == 0)).sum())
    if bare:
        notes.append(f"{bare} queries hold tournament votes without verification rows (a "
                     "log written before replay became exact): their candidates' scores "
                     "depend on the opponents drawn, so VERIFY is masked there, not "
                     "simulated.")
    lengths = [len(p) for p in score_pos]
    ev_start, ev_end = _spans(np.array(span_event, dtype=np.int64),
                              np.array(span_rows, dtype=np.int64), total, *_times(log))
    return {"ev_start": ev_start, "ev_end": ev_end,
            "ev_offsets": ev_offsets.astype(np.int64), "ev_ok": ok, "ev_prev": prev,
            "ev_sig": sig, "ev_n": size, "ev_cost": cost, "ev_verified": verified,
            "ev_best": best, "ev_sum": sums,
            "ev_score_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "ev_score_pos": np.array([p for ps in score_pos for p in ps], dtype=np.int64),
            "ev_score_val": np.array([v for vs in score_val for v in vs], dtype=np.float64)}


def _parse_event(query: int, drawn: str | None, scores: str | None,
                 ids: dict[tuple[int, str], int]
                 ) -> tuple[list[int], dict[int, float]] | None:
    """An event's drawn positions and scores by position; None if it cannot be used."""
    try:
        members = [ids.get((query, str(name))) for name in json.loads(drawn or "null")]
        given = json.loads(scores or "null")
    except (TypeError, ValueError):
        return None
    if not members or any(m is None for m in members) or not isinstance(given, dict):
        return None
    assigned = {ids.get((query, str(name))): float(value) for name, value in given.items()}
    if None in assigned or not set(assigned) <= set(members):
        return None
    return members, assigned  # type: ignore[return-value]

"""Logs for the replay environment tests: hand-made, random, and read from ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from allocator.logs.table import AttemptLog

CANONICAL = ("query_id", "arm", "kind", "round", "answer", "correct", "cost", "score")


def make_log(rows: list[dict], *, simulated: bool = False) -> AttemptLog:
    """A log from a list of attempt dicts (missing optional columns take defaults; other
    keys, such as the executors' ``attempt_id``, ``summary`` or ``event``, become string
    columns)."""
    columns = {
        "query_id": pa.array([r["query_id"] for r in rows], pa.string()),
        "arm": pa.array([r.get("arm", "default") for r in rows], pa.string()),
        "kind": pa.array([r.get("kind", "sample") for r in rows], pa.string()),
        "round": pa.array([r.get("round", 0) for r in rows], pa.int32()),
        "answer": pa.array([r["answer"] for r in rows], pa.string()),
        "correct": pa.array([float(r["correct"]) for r in rows], pa.float32()),
        "cost": pa.array([float(r.get("cost", 1.0)) for r in rows], pa.float64()),
        "score": pa.array([r.get("score") for r in rows], pa.float32()),
    }
    extras = sorted({key for row in rows for key in row} - set(CANONICAL))
    for key in extras:
        columns[key] = pa.array([None if r.get(key) is None else str(r[key]) for r in rows],
                                pa.string())
    log, _ = AttemptLog.from_arrow(pa.table(columns), simulated=simulated)
    return log


def random_log(
    seed: int,
    n_queries: int = 12,
    arms: tuple[str, ...] = ("cheap", "strong"),
    max_pool: int = 6,
    refine_rounds: int = 2,
    scores: bool = True,
) -> AttemptLog:
    """A random multi-arm log with empty pools, no-answers, refinements and scores,
    labelled simulated (its refinements depend on no particular draft, so replay opens
    their rounds in order)."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for q in range(n_queries):
        gold = int(rng.integers(4))
        for arm_index, arm in enumerate(arms):
            for _ in range(int(rng.integers(0 if arm_index else 1, max_pool + 1))):
                rows.append(_attempt(rng, f"q{q}", arm, "sample", 0, gold, scores))
        for round_ in range(1, refine_rounds + 1):
            for _ in range(int(rng.integers(0, 3))):
                rows.append(_attempt(rng, f"q{q}", arms[-1], "refine", round_, gold, scores))
    return make_log(rows, simulated=True)


def _attempt(rng: np.random.Generator, query: str, arm: str, kind: str, round_: int,
             gold: int, scores: bool) -> dict:
    answer = None if rng.random() < 0.15 else int(rng.integers(4))
    correct = float(answer == gold)
    score = None
    if scores and rng.random() < 0.8:
        score = round(float(np.clip(correct * 0.5 + rng.random() * 0.6, 0, 1)), 1)
    return {"query_id": query, "arm": arm, "kind": kind, "round": round_,
            "answer": None if answer is None else str(answer), "correct": correct,
            "cost": float(rng.integers(1, 5)) * (3.0 if arm == "strong" else 1.0),
            "score": score}


def tiny_log() -> AttemptLog:
    """One arm, three queries; q0 has a 2-2 tie, q1 no-answers, q2 one sample."""
    rows = [
        {"query_id": "q0", "answer": "a", "correct": 1, "cost": 1.0},
        {"query_id": "q0", "answer": "a", "correct": 1, "cost": 2.0},
        {"query_id": "q0", "answer": "b", "correct": 0, "cost": 1.0},
        {"query_id": "q0", "answer": "b", "correct": 0, "cost": 2.0},
        {"query_id": "q1", "answer": None, "correct": 0, "cost": 1.0},
        {"query_id": "q1", "answer": "c", "correct": 1, "cost": 1.0},
        {"query_id": "q1", "answer": None, "correct": 0, "cost": 1.0},
        {"query_id": "q2", "answer": "d", "correct": 0, "cost": 4.0},
    ]
    return make_log(rows)


def rich_log() -> AttemptLog:
    """Two arms, refinements over two rounds, verifier scores on most candidates."""
    return random_log(seed=7)


# ------------------------------------------------------------------ public logs
def read_mot_date(public_logs: Path) -> pa.Table:
    """The date task of the MoT cascade logs (three models, many configs)."""
    table = pv.read_csv(
        public_logs / "mot_cascade" / "samples.csv.gz",
        parse_options=pv.ParseOptions(newlines_in_values=True),
        convert_options=pv.ConvertOptions(
            column_types={"answer": pa.string(), "gold": pa.string(), "query_id": pa.string()},
            include_columns=["task", "query_id", "model", "config", "answer", "is_correct",
                             "gen_chars"],
        ),
    )
    return table.filter(pc.equal(table["task"], "date"))


def mot_log(table: pa.Table, pairs: list[tuple[str, str]], cost: str = "ones",
            oracle_scores: bool = False) -> AttemptLog:
    """A log of the given (model, config) pairs, one arm each (named model/config).

    Args:
        table: the MoT rows (see :func:`read_mot_date`).
        pairs: the (model, config) pairs to keep.
        cost: ``"ones"`` (one unit per sample) or ``"gen_chars"`` (generation length).
        oracle_scores: give every sample a verifier score equal to its correctness.
    """
    keep = np.zeros(table.num_rows, dtype=bool)
    model = table["model"].to_numpy(zero_copy_only=False)
    config = table["config"].to_numpy(zero_copy_only=False)
    for m, c in pairs:
        keep |= (model == m) & (config == c)
    sub = table.filter(pa.array(keep))
    correct = pc.cast(sub["is_correct"], pa.float32())
    columns = {
        "query_id": sub["query_id"],
        "arm": pc.binary_join_element_wise(sub["model"], sub["config"], "/"),
        "answer": sub["answer"],
        "correct": correct,
        "cost": (pa.array(np.ones(sub.num_rows)) if cost == "ones"
                 else pc.cast(sub["gen_chars"], pa.float64())),
    }
    if oracle_scores:
        columns["score"] = correct
    log, _ = AttemptLog.from_arrow(pa.table(columns))
    return log

"""AdaptiveConsistency against the authors' package, decision for decision.

The reference is ``adaptiveconsistency`` (``AC(...).should_stop(answers)`` with
``BetaStoppingCriteria``). Its rule depends on the counts of the two most common answers
only, and our table holds the package's own integrals, so the probabilities must be equal
to the bit and the decisions equal at every threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pytest
from adaptive_consistency import AC, BetaStoppingCriteria
from policy_states import stack

from allocator.actions import STOP, sample_action
from allocator.featurizer import QueryState, StateBatch
from allocator.policies import AdaptiveConsistency
from allocator.policies.self_consistency import beta_stop_probability

THRESHOLDS = sorted({*AdaptiveConsistency.default_sweep, 0.5, 0.75, 0.56, 0.97, 0.9999})


def reference(answers: list) -> dict:
    """The package's decision record for ``answers`` at its default threshold 0.95."""
    return AC(max_gens=40, stop_criteria=BetaStoppingCriteria(0.95)).should_stop(
        answers, return_dict=True)


def stops(policy: AdaptiveConsistency, state: StateBatch) -> np.ndarray:
    mask = np.ones((state.batch_size, 4), dtype=bool)
    return policy.act(state, mask) == STOP


def compare(state: StateBatch, drawn: np.ndarray, records: list[dict]) -> None:
    """Assert equal probabilities and decisions at every threshold, with and without cap."""
    ref_prob = np.array([r["prob"] for r in records])
    ref_stop = np.array([r["stop"] for r in records])
    ours = AdaptiveConsistency(max_samples=41).stop_probability(state)
    bad = np.flatnonzero(ours != ref_prob)
    assert bad.size == 0, f"{bad.size} probabilities differ, e.g. {ours[bad[:3]]} vs " \
                          f"{ref_prob[bad[:3]]}"
    assert (stops(AdaptiveConsistency(0.95, max_samples=41), state) == ref_stop).all()
    for threshold in THRESHOLDS:
        uncapped = stops(AdaptiveConsistency(threshold, max_samples=41), state)
        mismatches = int((uncapped != (ref_prob >= threshold)).sum())
        assert mismatches == 0, f"threshold {threshold}: {mismatches} decisions differ"
    capped = stops(AdaptiveConsistency(0.95), state)
    assert (capped == (ref_stop | (drawn >= 40))).all()


def grid_answers() -> list[list[str]]:
    """Every (top1, top2) with top1 + top2 <= 40, alone and with extra distinct answers."""
    rng = np.random.default_rng(0)
    lists = []
    for a in range(1, 41):
        for b in range(min(a, 40 - a) + 1):
            base = ["lead"] * a + ["second"] * b
            lists.append(base)
            if b >= 1 and a + b < 40:  # singletons keep top2 == b
                extra = [f"other{i}" for i in range(int(rng.integers(1, 41 - a - b)))]
                lists.append(list(rng.permutation(base + extra)))
    return lists


def test_grid_of_vote_vectors_matches_the_reference() -> None:
    lists = grid_answers()
    states = []
    for answers in lists:
        state = QueryState(1)
        for answer in answers:
            state.add_sample(0, answer)
        states.append(state)
    drawn = np.array([len(answers) for answers in lists])
    compare(stack(states), drawn, [reference(answers) for answers in lists])


def test_hand_computed_values() -> None:
    # One answer: P(p > 1/2), p ~ Beta(2, 1) = 1 - 1/4 = 0.75 -> 0.7 stops, 0.8 does not.
    assert beta_stop_probability(np.array([1]), np.array([0]))[0] == 0.75
    state = QueryState(1)
    state.add_sample(0, "x")
    one = state.to_batch()
    assert stops(AdaptiveConsistency(0.7), one)[0] and not stops(AdaptiveConsistency(0.8), one)[0]
    # Closed form P(Binomial(a + b + 1, 1/2) <= a), within the integrals' error.
    from math import comb
    for a, b in [(5, 0), (4, 2), (10, 3), (20, 19)]:
        n = a + b + 1
        exact = sum(comb(n, k) for k in range(a + 1)) / 2**n
        assert abs(beta_stop_probability(np.array([a]), np.array([b]))[0] - exact) < 1e-7


def test_no_votes_keeps_sampling_and_masked_sample_stops() -> None:
    state = QueryState(1)
    state.add_sample(0, None)
    batch = state.to_batch()
    mask = np.ones((1, 4), dtype=bool)
    assert AdaptiveConsistency(0.5).act(batch, mask)[0] == sample_action(0)
    mask[0, sample_action(0)] = False
    assert AdaptiveConsistency(0.5).act(batch, mask)[0] == STOP


def test_counts_beyond_the_default_table_grow_it() -> None:
    top1, top2 = np.array([60, 45, 3]), np.array([10, 44, 3])
    got = beta_stop_probability(top1, top2)
    want = [reference(["a"] * a + ["b"] * b)["prob"] for a, b in zip(top1, top2, strict=True)]
    assert got.tolist() == want


# --------------------------------------------------------------------- public logs


def date_answers(public_logs: Path) -> list[np.ndarray]:
    """Per query of date / gpt-3.5-turbo / cot1_40: its 40 answers, in log order."""
    table = pv.read_csv(
        public_logs / "mot_cascade" / "samples.csv.gz",
        parse_options=pv.ParseOptions(newlines_in_values=True),
        convert_options=pv.ConvertOptions(
            column_types={"answer": pa.string()},
            include_columns=["task", "model", "config", "query_id", "sample_idx", "answer"]),
    )
    keep = pc.and_(pc.and_(pc.equal(table["task"], "date"),
                           pc.equal(table["model"], "gpt-3.5-turbo")),
                   pc.equal(table["config"], "cot1_40"))
    sub = table.filter(keep).sort_by([("query_id", "ascending"), ("sample_idx", "ascending")])
    queries = sub["query_id"].to_numpy()
    answers = np.array(sub["answer"].to_pylist(), dtype=object)
    starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]])
    return np.split(answers, starts[1:])


@pytest.mark.public_logs
def test_every_prefix_of_the_date_log_matches_the_reference(public_logs: Path) -> None:
    per_query = date_answers(public_logs)
    assert len(per_query) == 369 and all(len(a) == 40 for a in per_query)
    assert not any(answer is None for answers in per_query for answer in answers)
    rng = np.random.default_rng(2023)
    votes_rows, drawn, records = [], [], []
    for answers in per_query:
        codes = np.unique(answers, return_inverse=True)[1]
        orders = [np.arange(40), *(rng.permutation(40) for _ in range(3))]
        for order in orders:
            ordered = answers[order]
            onehot = np.eye(codes.max() + 1)[codes[order]]
            votes_rows.append(np.cumsum(onehot, axis=0))  # prefix k = 1..40
            drawn.append(np.arange(1, 41))
            records.extend(reference(list(ordered[:k])) for k in range(1, 41))
    width = max(v.shape[1] for v in votes_rows)
    votes = np.concatenate([np.pad(v, ((0, 0), (0, width - v.shape[1]))) for v in votes_rows])
    k = np.concatenate(drawn).astype(np.float64)
    n = len(k)
    state = StateBatch(samples=k[:, None], votes=votes, no_answer=np.zeros(n),
                       refines=np.zeros(n), verified=np.zeros(n),
                       best_score=np.full(n, np.nan), cost=k, lam=np.zeros(n),
                       prior=np.full((n, 1), 0.5))
    assert n == 369 * 4 * 40
    compare(state, k, records)

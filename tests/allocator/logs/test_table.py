"""Core log modules: voting, selection, Parquet round trips, query-level columns, summaries."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.errors import LogFormatError, ParameterError
from allocator.logs import AttemptLog, read_log, summarize, write_log
from allocator.logs.schema import META_FORMAT_VERSION
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.votes import majority_correctness


def brute_force_majority(group: list[int], answer: list[int], correct: list[float],
                         n_groups: int) -> list[float]:
    """The voting rule written the slow, obvious way."""
    result = []
    for g in range(n_groups):
        votes = [(a, c) for gg, a, c in zip(group, answer, correct, strict=True)
                 if gg == g and a != -1]
        if not votes:
            result.append(0.0)
            continue
        counts = Counter(a for a, _ in votes)
        top = max(counts.values())
        leaders = [a for a, n in counts.items() if n == top]
        mean = {a: np.mean([c for aa, c in votes if aa == a]) for a in leaders}
        result.append(float(np.mean([mean[a] for a in leaders])))
    return result


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_majority_matches_brute_force(data: st.DataObject) -> None:
    n_groups = data.draw(st.integers(1, 6))
    n = data.draw(st.integers(0, 40))
    group = data.draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n))
    answer = data.draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n))
    correct = data.draw(st.lists(st.sampled_from([0.0, 1.0, 0.25, 0.5]), min_size=n,
                                 max_size=n))
    got = majority_correctness(np.array(group, dtype=np.int64), np.array(answer, dtype=np.int64),
                               np.array(correct), n_groups)
    assert got.shape == (n_groups,)
    np.testing.assert_allclose(got, brute_force_majority(group, answer, correct, n_groups))


def test_majority_tie_is_averaged() -> None:
    got = majority_correctness(np.array([0, 0, 0, 0, 1]), np.array([1, 1, 2, 2, -1]),
                               np.array([1.0, 1.0, 0.0, 0.0, 1.0]), 2)
    assert list(got) == [0.5, 0.0]


def small_table() -> pa.Table:
    return pa.table({
        "query_id": ["b", "a", "b", "c", "a", "b"],
        "arm": ["x", "y", "y", "x", "x", "x"],
        "answer": ["1", "2", "1", "3", None, "2"],
        "correct": [1.0, 0.0, 1.0, 1.0, 0.0, 0.0],
        "cost": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "query.text": ["B", "A", "B", "C", "A", "B"],
        "note": ["n0", "n1", "n2", "n3", "n4", "n5"],
    })


def pools(log: AttemptLog) -> dict[str, list[tuple[str, str, float, float]]]:
    """Per query id: (arm, answer text, grade, cost) of every attempt, in order."""
    out = {}
    for q, qid in enumerate(log.query_ids):
        rows = range(*log.pool(q).indices(log.n_attempts))
        out[qid] = [(log.arms[log.arm[r]],
                     None if log.answer[r] < 0 else log.answers[log.answer[r]],
                     float(log.correct[r]), float(log.cost[r])) for r in rows]
    return out


def test_from_arrow_groups_by_query_in_file_order() -> None:
    log, _ = AttemptLog.from_arrow(small_table())
    assert list(log.query_ids) == ["b", "a", "c"]
    assert list(log.offsets) == [0, 3, 5, 6]
    assert pools(log)["b"] == [("x", "1", 1.0, 1.0), ("y", "1", 1.0, 3.0), ("x", "2", 0.0, 6.0)]
    assert list(log.queries.text) == ["B", "A", "C"]
    assert list(log.extra["note"]) == ["n0", "n2", "n5", "n1", "n4", "n3"]


def test_select_queries_keeps_pools() -> None:
    log = generate(SyntheticConfig(n_queries=30, refine_rounds=1, with_scores=True), seed=1)
    rng = np.random.default_rng(0)
    chosen = rng.permutation(log.n_queries)[:12]
    part = log.select_queries(chosen)
    assert list(part.query_ids) == list(log.query_ids[chosen])
    full = pools(log)
    assert pools(part) == {qid: full[qid] for qid in part.query_ids}
    assert np.array_equal(part.queries.metadata["difficulty"],
                          log.queries.metadata["difficulty"][chosen])
    back = part.select_queries(np.argsort(chosen))
    assert list(back.query_ids) == list(log.query_ids[np.sort(chosen)])
    everything = log.select_queries(np.arange(log.n_queries))
    assert everything.fingerprint() == log.fingerprint()


def test_select_arms_keeps_only_their_attempts() -> None:
    log, _ = AttemptLog.from_arrow(small_table())
    only_y = log.select_arms(["y"])
    assert only_y.arms == ("y",) and list(only_y.query_ids) == ["b", "a"]
    assert pools(only_y) == {"b": [("y", "1", 1.0, 3.0)], "a": [("y", "2", 0.0, 2.0)]}
    assert list(only_y.queries.text) == ["B", "A"]
    assert list(only_y.extra["note"]) == ["n2", "n1"]
    swapped = log.select_arms(["y", "x"])
    assert swapped.arms == ("y", "x") and pools(swapped) == pools(log)
    with pytest.raises(LogFormatError, match="unknown arms"):
        log.select_arms(["z"])


def test_select_arms_and_queries_commute() -> None:
    log = generate(SyntheticConfig(n_queries=25), seed=3)
    chosen = np.array([4, 0, 17, 9])
    one = log.select_arms(["small"]).select_queries(chosen)
    other = log.select_queries(chosen).select_arms(["small"])
    assert one.fingerprint() == other.fingerprint()
    assert pools(one) == {qid: [a for a in attempts if a[0] == "small"]
                          for qid, attempts in pools(log.select_queries(chosen)).items()}


def test_with_prices_scales_each_arms_costs_and_nothing_else() -> None:
    log = generate(SyntheticConfig(n_queries=25), seed=4)
    priced = log.with_prices({"large": 30.0})
    large = log.arm == log.arms.index("large")
    np.testing.assert_array_equal(priced.cost[large], 30.0 * log.cost[large])
    np.testing.assert_array_equal(priced.cost[~large], log.cost[~large])
    for name in ("answer", "correct", "arm", "offsets", "attempt_id"):
        np.testing.assert_array_equal(getattr(priced, name), getattr(log, name))
    assert priced.fingerprint() != log.fingerprint()  # costs are part of the identity
    assert log.with_prices({}).fingerprint() == log.fingerprint()
    with pytest.raises(LogFormatError, match=r"unknown arms \['huge'\]"):
        log.with_prices({"huge": 2.0})
    for bad in (-1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ParameterError, match="prices"):
            log.with_prices({"small": bad})


def test_parquet_round_trip_preserves_everything(tmp_path: Path) -> None:
    log, _ = AttemptLog.from_arrow(small_table())
    path = write_log(log, tmp_path / "log.parquet")
    assert not list(tmp_path.glob("*.partial"))
    again = read_log(path)
    assert again.fingerprint() == log.fingerprint()
    assert list(again.queries.text) == ["B", "A", "C"]
    assert list(again.extra["note"]) == list(log.extra["note"])
    assert list(again.attempt_id) == list(log.attempt_id)
    assert not again.simulated


def test_read_log_refuses_a_newer_format(tmp_path: Path) -> None:
    log, _ = AttemptLog.from_arrow(small_table())
    path = write_log(log, tmp_path / "log.parquet")
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, META_FORMAT_VERSION: b"99"}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(LogFormatError, match="upgrade"):
        read_log(path)


def test_varying_query_column_is_refused() -> None:
    table = small_table()
    texts = table.column("query.text").to_pylist()
    texts[5] = "B, but different"
    bad = table.set_column(table.column_names.index("query.text"), "query.text",
                           pa.array(texts))
    with pytest.raises(LogFormatError) as caught:
        AttemptLog.from_arrow(bad, source="x.parquet")
    assert caught.value.column == "query.text" and caught.value.line == 6
    assert "'b'" in str(caught.value) and caught.value.fix
    numbers = table.append_column("query.level", pa.array([1.0, 2.0, 1.0, 3.0, 2.0, 1.5]))
    with pytest.raises(LogFormatError) as caught:
        AttemptLog.from_arrow(numbers)
    assert caught.value.column == "query.level" and caught.value.line == 6
    same = table.append_column("query.level", pa.array([1.0, np.nan, 1.0, 3.0, np.nan, 1.0]))
    assert np.isnan(AttemptLog.from_arrow(same)[0].queries.metadata["level"][1])


def test_summary_of_a_hand_made_log() -> None:
    log, _ = AttemptLog.from_arrow(small_table())
    summary = summarize(log)
    x = summary["x"]
    # arm x: b -> [1 (right), 2 (wrong)] tie -> 0.5; a -> [no answer] -> 0; c -> [3 right] -> 1
    assert (x.queries, x.attempts) == (3, 4)
    assert x.attempt_accuracy == pytest.approx(0.5)
    assert x.majority_accuracy == pytest.approx(0.5)
    assert (x.always, x.never, x.sometimes) == (1, 1, 1)
    assert x.mean_cost == pytest.approx(4.0)
    assert set(summary) == {"x", "y", "(all arms)"}
    assert summary["(all arms)"].attempts == 6

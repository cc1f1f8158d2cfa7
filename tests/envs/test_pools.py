"""The replay precomputation: layout of candidates, local answers, settings validation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from replay_fixtures import make_log, random_log

from allocator.envs.pools import ReplayPools, ReplaySettings, UniformStream, shuffle_order
from allocator.errors import EnvironmentConfigError, ParameterError
from allocator.logs.schema import KIND_REFINE, KIND_VERIFY
from allocator.logs.table import AttemptLog


def test_tiny_layout(tiny_log: AttemptLog) -> None:
    pools = ReplayPools.from_log(tiny_log)
    assert pools.n_queries == 3 and pools.n_arms == 1
    assert pools.n_candidates.tolist() == [4, 3, 1]
    assert pools.arm_count[:, 0].tolist() == [4, 3, 1]
    assert pools.refine_count.tolist() == [0, 0, 0] and not pools.supports_refine
    assert not pools.supports_verify
    # q0 answers a, a, b, b; q1 none, c, none; q2 d.
    assert pools.cand_answer.tolist() == [0, 0, 1, 1, -1, 0, -1, 0]
    assert pools.n_answers.tolist() == [2, 1, 1] and pools.max_answers == 2
    assert tiny_log.answers[pools.answer_code].tolist() == ["a", "b", "c", "d"]
    assert pools.answer_correct.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert pools.mean_sample_cost == pytest.approx(13 / 8)


def test_groups_slots_and_rows_are_consistent() -> None:
    log = random_log(seed=3, n_queries=30)
    pools = ReplayPools.from_log(log)
    candidates = np.flatnonzero(log.kind != KIND_VERIFY)
    assert sorted(pools.cand_row.tolist()) == candidates.tolist()  # each once
    query = log.attempt_query[pools.cand_row]
    assert (np.diff(query) >= 0).all()
    for q in range(pools.n_queries):
        rows = slice(pools.cand_offsets[q], pools.cand_offsets[q + 1])
        groups = pools.cand_group[rows]
        assert (np.diff(groups) >= 0).all()
        for g in range(pools.n_groups):
            members = np.flatnonzero(groups == g)
            assert len(members) == pools.group_count[q, g]
            if len(members):
                assert members[0] == pools.group_start[q, g]
                assert pools.cand_slot[rows][members].tolist() == list(range(len(members)))
                assert (np.diff(pools.cand_row[rows][members]) > 0).all()  # log order
    # Samples come first, by arm; refinements (without a logged workspace) by the rank of
    # their round among the query's rounds.
    is_refine = log.kind[pools.cand_row] == KIND_REFINE
    assert (pools.cand_group[~is_refine] == log.arm[pools.cand_row[~is_refine]]).all()
    for q in range(pools.n_queries):
        mine = is_refine & (query == q)
        rounds = log.round[pools.cand_row[mine]]
        rank = np.unique(rounds, return_inverse=True)[1].ravel()
        assert (pools.cand_group[mine] == pools.n_arms + rank).all()
    # Local answers decode to the log's answers.
    has = pools.cand_answer >= 0
    decoded = pools.answer_code[pools.answer_offsets[query[has]] + pools.cand_answer[has]]
    assert (decoded == log.answer[pools.cand_row[has]]).all()


def test_verify_rows_are_not_candidates() -> None:
    log = make_log([
        {"query_id": "q", "answer": "a", "correct": 1},
        {"query_id": "q", "kind": "verify", "answer": None, "correct": 0, "cost": 9.0},
    ])
    pools = ReplayPools.from_log(log)
    assert pools.n_candidates.tolist() == [1] and pools.mean_sample_cost == 1.0


def test_a_log_without_samples_is_refused() -> None:
    log = make_log([{"query_id": "q", "kind": "refine", "round": 1, "answer": "a",
                     "correct": 1}])
    with pytest.raises(EnvironmentConfigError, match="no 'sample' attempts"):
        ReplayPools.from_log(log)


def test_zero_costs_need_an_explicit_cost_unit() -> None:
    pools = ReplayPools.from_log(make_log([{"query_id": "q", "answer": "a", "correct": 1,
                                            "cost": 0.0}]))
    with pytest.raises(EnvironmentConfigError, match="cost_unit"):
        ReplaySettings.create(pools, "Test")
    assert ReplaySettings.create(pools, "Test", cost_unit=2.0).cost_unit == 2.0


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("lambda_", -0.1),
        ("lambda_", float("nan")),
        ("lambda_range", (0.2, 0.1)),
        ("lambda_range", "cheap"),
        ("lambda_sampling", "cubic"),
        ("verify_cost", -1.0),
        ("cost_unit", 0.0),
        ("prior", np.full((3, 2), 0.5)),
        ("prior", np.full((3, 1), 1.5)),
        ("queries", [0, 7]),
        ("queries", []),
        ("max_samples", 0),
        ("max_samples", 2.5),
    ],
)
def test_settings_errors_name_the_parameter(tiny_log: AttemptLog, parameter: str,
                                            value: object) -> None:
    pools = ReplayPools.from_log(tiny_log)
    with pytest.raises(ParameterError, match=parameter) as error:
        ReplaySettings.create(pools, "ReplayEnv", **{parameter: value})
    assert "ReplayEnv" in str(error.value)


def test_log_uniform_needs_a_positive_range(tiny_log: AttemptLog) -> None:
    pools = ReplayPools.from_log(tiny_log)
    with pytest.raises(ParameterError, match="lo > 0"):
        ReplaySettings.create(pools, "Test", lambda_range=(0.0, 1.0),
                              lambda_sampling="log-uniform")
    settings = ReplaySettings.create(pools, "Test", lambda_range=(0.01, 1.0),
                                     lambda_sampling="log-uniform")
    lambdas = settings.lambdas(np.array([0.0, 0.5, 0.999999]))
    np.testing.assert_allclose(lambdas, [0.01, 0.1, 1.0], rtol=1e-4)


def test_uniform_stream_reads_blocks() -> None:
    stream, rng = UniformStream(8), np.random.default_rng(5)
    first = stream.take(rng, 5).copy()
    second = stream.take(rng, 3).copy()
    third = stream.take(rng, 2).copy()  # only 0 left: a new block
    reference = np.random.default_rng(5)
    block1, block2 = reference.random(8), reference.random(8)
    np.testing.assert_array_equal(np.concatenate([first, second]), block1)
    np.testing.assert_array_equal(third, block2[:2])


def test_shuffle_order_sorts_by_group_then_key() -> None:
    keys = np.array([0.9, 0.1, 0.5, 0.3, 0.2])
    groups = np.array([0, 0, 0, 1, 1])
    assert shuffle_order(keys, groups).tolist() == [1, 2, 0, 4, 3]


def test_building_at_scale() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    table = pa.table({
        "query_id": pa.array((np.arange(n) // 50).astype(str)),
        "arm": pa.array(np.array(["x", "y"])[rng.integers(0, 2, n)]),
        "answer": pa.array(rng.integers(0, 20, n).astype(str)),
        "correct": pa.array(rng.integers(0, 2, n).astype(np.float32)),
        "score": pa.array(rng.random(n).astype(np.float32)),
    })
    log, _ = AttemptLog.from_arrow(table)
    pools = ReplayPools.from_log(log)
    assert pools.n_candidates.sum() == n

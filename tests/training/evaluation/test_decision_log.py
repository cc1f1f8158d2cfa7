"""Decision logs: recording a policy in replay, the columns, validation and Parquet."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from allocator.actions import STOP
from allocator.errors import LogFormatError, ParameterError
from allocator.featurizer import StateBatch, featurize
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.policies import Policy, make_policy
from allocator.policies.stochastic import EpsilonGreedy
from allocator.training.evaluation.decision_log import (
    SCHEMA,
    DecisionLog,
    read_decisions,
    record_decisions,
    write_decisions,
)

LAMBDA = 0.03


@pytest.fixture(scope="module")
def rich_log():
    """Two arms, one refinement round, verifier scores: every action can be allowed."""
    config = SyntheticConfig(n_queries=40, with_scores=True, refine_rounds=1)
    return generate(config, seed=3)


@pytest.fixture(scope="module")
def logger() -> EpsilonGreedy:
    return EpsilonGreedy(make_policy("adaptive-consistency", threshold=0.9), epsilon=0.4)


@pytest.fixture(scope="module")
def decisions(rich_log, logger) -> DecisionLog:
    return record_decisions(rich_log, logger, episodes=300, seed=7, lambda_=LAMBDA,
                            verify_cost=0.5)


def _columns(decisions: DecisionLog) -> dict[str, np.ndarray]:
    return {name: values.copy() for name, values in decisions.columns.items()}


def test_every_action_kind_is_logged(decisions: DecisionLog) -> None:
    actions = set(decisions.actions().tolist())
    assert actions == set(range(decisions.n_arms + 3))  # STOP, both SAMPLEs, REFINE, VERIFY
    assert np.isfinite(decisions.columns["best_score"]).any()
    assert decisions.n_episodes == 300
    assert json.loads(json.dumps(dict(decisions.metadata))) == dict(decisions.metadata)
    assert decisions.metadata["policy"].startswith("epsilon-greedy(base=AdaptiveConsistency")


def test_the_logged_states_rebuild_what_the_policy_saw(decisions, logger) -> None:
    """The logging policy, asked again on the rebuilt states, gives the logged numbers."""
    states = decisions.states()
    probs = logger.probabilities(states, decisions.masks())
    np.testing.assert_array_equal(probs, decisions.logging_probabilities())
    rows = np.arange(decisions.n_decisions)
    np.testing.assert_array_equal(probs[rows, decisions.actions()], decisions.propensities())


@pytest.mark.parametrize("policy", [make_policy("esc", window=2),
                                    make_policy("confidence-threshold", tau=0.6),
                                    make_policy("fixed-n", n=3, verify=True)],
                         ids=lambda p: p.name)
def test_a_deterministic_policy_is_logged_with_propensity_one(rich_log, policy) -> None:
    logged = record_decisions(rich_log, policy, episodes=60, seed=1, lambda_=LAMBDA)
    assert (logged.propensities() == 1.0).all()
    np.testing.assert_array_equal(policy.act(logged.states(), logged.masks()),
                                  logged.actions())


def test_returns_are_correctness_minus_lambda_cost(decisions: DecisionLog) -> None:
    correct, cost = decisions.returns("correct"), decisions.returns("cost")
    np.testing.assert_allclose(decisions.returns(), correct - LAMBDA * cost, atol=1e-12)
    assert ((correct >= 0) & (correct <= 1)).all()
    terminal = decisions.columns["terminal"]
    # The cost spent is the state's cost at the end: what the last state held plus the
    # last action's spend (0 for STOP).
    np.testing.assert_allclose(cost, decisions.columns["cost"][terminal]
                               + decisions.columns["step_cost"][terminal])
    assert (decisions.actions()[terminal] == STOP).all()
    assert np.isnan(decisions.columns["correct"][~terminal]).all()


def test_exploration_happens_at_the_logged_rate(rich_log) -> None:
    """epsilon-greedy leaves its base with probability epsilon * (1 - 1/k)."""
    base = make_policy("fixed-n", n=4)
    logged = record_decisions(rich_log, EpsilonGreedy(base, epsilon=0.3), episodes=1500,
                              seed=2, lambda_=LAMBDA)
    allowed = logged.masks().sum(axis=1)
    expected = 0.3 * (1 - 1 / allowed)
    off = base.act(logged.states(), logged.masks()) != logged.actions()
    spread = np.sqrt((expected * (1 - expected)).sum())
    assert abs(off.sum() - expected.sum()) < 5 * spread


def test_recording_is_deterministic_under_the_seed(rich_log, logger, decisions) -> None:
    again = record_decisions(rich_log, logger, episodes=300, seed=7, lambda_=LAMBDA,
                             verify_cost=0.5, batch_size=17)
    for name in SCHEMA:
        np.testing.assert_array_equal(again.columns[name], decisions.columns[name], name)
    other = record_decisions(rich_log, logger, episodes=300, seed=8, lambda_=LAMBDA,
                             verify_cost=0.5)
    assert not np.array_equal(other.columns["query"][:50], decisions.columns["query"][:50])


def test_episode_queries_force_each_episode_s_query(rich_log, logger) -> None:
    queries = np.repeat(np.arange(rich_log.n_queries), 3)
    logged = record_decisions(rich_log, logger, episodes=len(queries), seed=0,
                              lambda_=LAMBDA, episode_queries=queries)
    np.testing.assert_array_equal(logged.episode_queries, queries)
    np.testing.assert_array_equal(logged.columns["query_id"][logged.columns["terminal"]],
                                  rich_log.query_ids[queries])


def test_more_answers_than_vote_slots_keep_exact_statistics(rich_log, logger) -> None:
    wide = record_decisions(rich_log, logger, episodes=200, seed=4, lambda_=LAMBDA)
    narrow = record_decisions(rich_log, logger, episodes=200, seed=4, lambda_=LAMBDA, top_k=1)
    assert narrow.top_k == 1 and (wide.columns["distinct"] > 1).any()
    np.testing.assert_array_equal(featurize(narrow.states()), featurize(wide.states()))
    np.testing.assert_array_equal(narrow.actions(), wide.actions())
    np.testing.assert_array_equal(narrow.columns["votes"][:, 0], wide.columns["votes"][:, 0])


def test_parquet_round_trip_is_exact(tmp_path, decisions: DecisionLog) -> None:
    path = write_decisions(decisions, tmp_path / "decisions.parquet")
    back = read_decisions(path)
    assert back.arms == decisions.arms and dict(back.metadata) == dict(decisions.metadata)
    for name in SCHEMA:
        assert back.columns[name].dtype == decisions.columns[name].dtype, name
        np.testing.assert_array_equal(back.columns[name], decisions.columns[name], name)
    assert back.source == str(path)


def test_a_parquet_file_that_is_not_a_decision_log_is_refused(tmp_path, rich_log) -> None:
    from allocator.logs.parquet import write_log

    path = write_log(rich_log, tmp_path / "attempts.parquet")
    with pytest.raises(LogFormatError, match="not a decision log"):
        read_decisions(path)
    with pytest.raises(LogFormatError, match="cannot read Parquet"):
        read_decisions(tmp_path / "missing.parquet")


def _break(name: str, row: int, value: object):
    def edit(columns: dict[str, np.ndarray]) -> None:
        columns[name][row] = value
    return edit


def _end_early(columns: dict[str, np.ndarray]) -> None:
    columns["terminal"][int(np.flatnonzero(~columns["terminal"])[0])] = True


def _take_masked(columns: dict[str, np.ndarray]) -> None:
    row = int(np.flatnonzero(columns["action"] != STOP)[0])
    columns["mask"][row, 1:] = False


def _mass_on_masked(columns: dict[str, np.ndarray]) -> None:
    row = int(np.flatnonzero(~columns["mask"].all(axis=1))[0])
    masked = int(np.flatnonzero(~columns["mask"][row])[0])
    columns["probabilities"][row, masked] = 0.1


def _unnormalised(columns: dict[str, np.ndarray]) -> None:
    columns["probabilities"][3] *= 0.5
    columns["propensity"][3] *= 0.5


#: (edit, column named in the error, text of the error)
BROKEN = {
    "missing column": (lambda c: c.pop("propensity"), "propensity", "missing column"),
    "zero propensity": (_break("propensity", 5, 0.0), "propensity", "in (0, 1]"),
    "propensity above one": (_break("propensity", 5, 1.5), "propensity", "in (0, 1]"),
    "propensity not the action's": (_break("propensity", 5, 0.123), "propensity",
                                    "probability of the action taken"),
    "mass on a masked action": (_mass_on_masked, "probabilities", "masked actions"),
    "rows not summing to one": (_unnormalised, "probabilities", "sum to 1"),
    "negative probability": (_break("probabilities", 2, -0.5), "probabilities", ">= 0"),
    "step gap": (_break("step", 2, 7), "step", "0, 1, 2"),
    "terminal in the middle": (_end_early, "terminal", "last decision"),
    "episodes out of order": (_break("episode", 0, 99), "episode", "grouped by episode"),
    "masked action taken": (_take_masked, "action", "must be allowed"),
    "stop masked": (_break("mask", 0, [False, True, True, True, True]), "mask", "STOP"),
    "non-finite reward": (_break("reward", 1, np.nan), "reward", "finite"),
    "float actions": (lambda c: c.update(action=c["action"] + 0.5), "action", "int64"),
    "wrong width": (lambda c: c.update(prior=c["prior"][:, :1]), "prior", "shape"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_bad_columns_are_refused_naming_the_column(decisions: DecisionLog, case: str) -> None:
    edit, column, text = BROKEN[case]
    columns = _columns(decisions)
    edit(columns)
    with pytest.raises(LogFormatError, match=re.escape(text)) as error:
        DecisionLog(decisions.arms, columns, source="logs/d.parquet")
    assert error.value.column == column
    assert "logs/d.parquet" in str(error.value) and "Fix:" in str(error.value)


def test_a_bad_row_is_named_one_based(decisions: DecisionLog) -> None:
    columns = _columns(decisions)
    columns["propensity"][41] = 0.0
    with pytest.raises(LogFormatError) as error:
        DecisionLog(decisions.arms, columns)
    assert error.value.line == 42 and "row 42" in str(error.value)


@dataclass(frozen=True)
class _Leaky(Policy):
    """A broken policy: it puts probability on every action, masked or not."""

    name: ClassVar[str] = "leaky-test-policy"

    def act(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        return np.zeros(len(mask), dtype=np.int64)

    def probabilities(self, state: StateBatch, mask: np.ndarray) -> np.ndarray:
        return np.full(np.shape(mask), 1.0 / np.shape(mask)[1])


@pytest.mark.parametrize(("parameter", "value"), [
    ("episodes", 0), ("seed", -1), ("top_k", 0), ("batch_size", 0),
    ("episode_queries", np.arange(3)), ("lambda_", -1.0)])
def test_bad_arguments_are_named(rich_log, logger, parameter: str, value: object) -> None:
    arguments = {"episodes": 10, "seed": 0, "lambda_": LAMBDA, parameter: value}
    with pytest.raises(ParameterError) as error:
        record_decisions(rich_log, logger, **arguments)
    assert error.value.parameter == parameter


def test_a_policy_with_mass_on_masked_actions_is_refused(rich_log) -> None:
    with pytest.raises(ParameterError, match="masked actions") as error:
        record_decisions(rich_log, _Leaky(), episodes=5, seed=0, lambda_=LAMBDA)
    assert error.value.parameter == "policy"

"""The single replay environment: API conformance, determinism, masks and semantics."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from replay_fixtures import make_log

import allocator.envs
from allocator.envs import ReplayEnv
from allocator.envs.pools import ReplayNote
from allocator.errors import ParameterError
from allocator.featurizer import feature_names
from allocator.logs.table import AttemptLog

STOP = 0


def feature_index(env: ReplayEnv, name: str) -> int:
    """The column of a named feature in ``env``'s observations."""
    return feature_names(env.pools.arms).index(name)


def make(log: AttemptLog, **settings: object) -> gym.Env:
    return gym.make(allocator.envs.REPLAY_ENV_ID, log=log, **settings)


def random_episode(env: ReplayEnv, rng: np.random.Generator, *,
                   options: dict | None = None, seed: int | None = None) -> list[tuple]:
    """One episode of random valid actions: (action, obs, reward, info) per step."""
    obs, info = env.reset(seed=seed, options=options)
    steps: list[tuple] = [(None, obs, 0.0, info)]
    terminated = False
    while not terminated:
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, reward, terminated, truncated, info = env.step(action)
        assert not truncated
        steps.append((action, obs, reward, info))
    return steps


# ------------------------------------------------------------------ conformance
def test_registered_and_checked(tiny_log: AttemptLog, rich_log: AttemptLog) -> None:
    assert allocator.envs.REPLAY_ENV_ID in gym.registry
    for log, settings in ((tiny_log, {}),
                          (rich_log, {"verify_cost": 0.5, "lambda_range": (0.01, 0.3)})):
        env = make(log, **settings)
        check_env(env.unwrapped)
        assert env.unwrapped.action_masks().dtype == bool


@pytest.mark.public_logs
def test_checked_on_public_logs(date_gpt35_log: AttemptLog,
                                date_cascade_log: AttemptLog) -> None:
    for log in (date_gpt35_log, date_cascade_log):
        env = make(log, lambda_range=(0.0, 0.5))
        check_env(env.unwrapped)
        assert env.action_space.n == len(log.arms) + 3


def test_spaces_and_feature_names(rich_log: AttemptLog) -> None:
    env = ReplayEnv(rich_log)
    assert env.action_space.n == 2 + 3
    assert env.observation_space.shape == (len(feature_names(rich_log.arms)),)
    assert env.observation_space.dtype == np.float32
    assert (env.observation_space.high > env.observation_space.low).all()


def test_observations_stay_in_the_space(rich_log: AttemptLog) -> None:
    env = ReplayEnv(rich_log, verify_cost=2.0, lambda_range=(0.01, 1.0),
                    lambda_sampling="log-uniform")
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(300):
        for _, obs, _, info in random_episode(env, rng):
            assert env.observation_space.contains(obs), obs
            assert info["action_mask"].dtype == np.int8


# ------------------------------------------------------------------ determinism
def rollout(env: ReplayEnv, seed: int, episodes: int) -> list[tuple]:
    rng = np.random.default_rng(99)
    env.reset(seed=seed)
    record = []
    for _ in range(episodes):
        for action, obs, reward, info in random_episode(env, rng):
            record.append((action, obs.tobytes(), reward, info["query"], info["cost"]))
    return record


def test_same_seed_same_rollout_other_seed_differs(rich_log: AttemptLog) -> None:
    settings = {"verify_cost": 0.3, "lambda_range": (0.0, 0.2)}
    first = rollout(ReplayEnv(rich_log, **settings), seed=4, episodes=30)
    again = rollout(ReplayEnv(rich_log, **settings), seed=4, episodes=30)
    other = rollout(ReplayEnv(rich_log, **settings), seed=5, episodes=30)
    assert first == again
    assert first != other


def test_draws_are_a_random_order_without_replacement(tiny_log: AttemptLog) -> None:
    """q0 holds a, a, b, b: after 2 draws the leader share is 1 or 1/2, over seeds both."""
    env = ReplayEnv(tiny_log)
    shares = set()
    for seed in range(40):
        env.reset(seed=seed, options={"query": 0})
        env.step(1)
        obs, *_ = env.step(1)
        shares.add(round(float(obs[feature_index(env, 'leader_share')]), 3))
        env.step(1)
        obs, _, _, _, info = env.step(1)  # all four drawn: exactly two of each
        assert obs[feature_index(env, 'leader_share')] == pytest.approx(0.5)
        assert info["exhausted"] == 1 and not env.action_masks()[1]
    assert shares == {1.0, 0.5}


# ------------------------------------------------------------------ masks, exhaustion
def test_exhaustion_masks_sample_and_is_counted(tiny_log: AttemptLog) -> None:
    env = ReplayEnv(tiny_log, lambda_=0.05)
    unit = 13 / 8
    _, info = env.reset(seed=0, options={"query": 2})  # q2: one sample, answer d, wrong
    assert info["action_mask"].tolist() == [1, 1, 0, 0] and info["exhausted"] == 0
    _, reward, terminated, _, info = env.step(1)
    assert not terminated and reward == pytest.approx(-0.05 * 4.0 / unit)
    assert info["exhausted"] == 1 and info["action_mask"].tolist() == [1, 0, 0, 0]
    assert info["cost"] == 4.0
    # Asking for a sample the pool does not hold ends the episode as STOP would.
    _, reward, terminated, _, info = env.step(1)
    assert terminated and reward == 0.0
    assert info["invalid_action"] and info["exhaustion_hit"] and info["correct"] == 0.0
    with pytest.raises(ResetNeeded):
        env.step(STOP)


def test_refine_and_verify_are_masked_without_support(tiny_log: AttemptLog) -> None:
    env = ReplayEnv(tiny_log)
    rng = np.random.default_rng(1)
    env.reset(seed=1)
    for _ in range(50):
        for _, _, _, info in random_episode(env, rng):
            assert info["action_mask"][2] == 0 and info["action_mask"][3] == 0
    _, info = env.reset()
    _, reward, terminated, _, info = env.step(2)  # REFINE: masked
    assert terminated and info["invalid_action"] and not info["exhaustion_hit"]
    assert reward == info["correct"] == 0.0


def refine_rows() -> list[dict]:
    """One query: a wrong sample; round 1 refines to x (right), round 2 to y (wrong)."""
    return [
        {"query_id": "q", "answer": "s", "correct": 0},
        {"query_id": "q", "kind": "refine", "round": 2, "answer": "y", "correct": 0},
        {"query_id": "q", "kind": "refine", "round": 1, "answer": "x", "correct": 1},
        {"query_id": "q", "kind": "refine", "round": 2, "answer": "y", "correct": 0},
        {"query_id": "q", "kind": "refine", "round": 1, "answer": "x", "correct": 1},
    ]


def test_refinements_that_do_not_say_what_they_saw_are_masked_with_a_note() -> None:
    with pytest.warns(ReplayNote, match="conditioned_on"):
        env = ReplayEnv(make_log(refine_rows()))
    assert not env.pools.supports_refine
    assert any("conditioned_on" in note for note in env.pools.notes)
    env.reset(seed=0)
    assert not env.action_masks()[2]
    env.step(1)
    assert not env.action_masks()[2]  # never simulated


# The draft s (wrong) votes too: s ties x after one refinement, x and y tie after four.
@pytest.mark.parametrize(("refines", "correct"), [(1, 0.5), (2, 1.0), (3, 1.0), (4, 0.5)])
def test_simulated_refinements_draw_rounds_in_order_after_a_draft(refines: int,
                                                                  correct: float) -> None:
    env = ReplayEnv(make_log(refine_rows(), simulated=True))
    for seed in range(10):
        env.reset(seed=seed)
        assert not env.action_masks()[2]  # never before a draft
        env.step(1)
        for _ in range(refines):
            assert env.action_masks()[2]
            env.step(2)
        assert env.action_masks()[2] == (refines < 4)
        *_, info = env.step(STOP)
        assert info["correct"] == correct and info["n_refines"] == refines


def workspace_log() -> AttemptLog:
    """Drafts d1 (a, right), d2 (b, wrong); workspace S1 distilled {d1} (cost 10) with two
    refinements; S2 distilled {d1, d2} (cost 20) with one; S3 distilled S1's two
    refinements (cost 30) with one."""
    def refine(aid: str, summary: str, sources: list[str], answer: str, correct: int,
               round_: int) -> dict:
        return {"query_id": "q", "attempt_id": aid, "kind": "refine", "round": round_,
                "answer": answer, "correct": correct, "cost": 1.0, "summary": summary,
                "conditioned_on": json.dumps(sources)}

    def summary(aid: str, cost: float) -> dict:
        return {"query_id": "q", "attempt_id": aid, "kind": "verify", "answer": None,
                "correct": 0, "cost": cost, "role": "summary"}

    return make_log([
        {"query_id": "q", "attempt_id": "d1", "answer": "a", "correct": 1, "cost": 2.0},
        {"query_id": "q", "attempt_id": "d2", "answer": "b", "correct": 0, "cost": 2.0},
        summary("S1", 10.0), summary("S2", 20.0), summary("S3", 30.0),
        refine("r1", "S1", ["d1"], "a", 1, 1), refine("r2", "S1", ["d1"], "a", 1, 1),
        refine("r3", "S2", ["d1", "d2"], "b", 0, 1),
        refine("r4", "S3", ["r1", "r2"], "c", 0, 2),
    ])


def drawn_ids(env: ReplayEnv, log: AttemptLog, count: int) -> list[str]:
    """The attempt ids of the first ``count`` candidates of the episode's deck."""
    rows = env.pools.cand_row[env._start + np.array(env._deck[:count], dtype=np.int64)]
    return [str(log.attempt_id[row]) for row in rows]


def test_refine_is_offered_only_on_exactly_the_drafts_a_workspace_distilled() -> None:
    log = workspace_log()
    env = ReplayEnv(log, cost_unit=1.0, lambda_=0.0)
    seen = set()
    for seed in range(12):
        env.reset(seed=seed)
        assert not env.action_masks()[2]  # never before a draft
        env.step(1)
        first = drawn_ids(env, log, 1)[0]
        seen.add(first)
        assert env.action_masks()[2] == (first == "d1")  # S1 distilled {d1} only
        env.step(1)  # both drafts drawn: only S2 matches
        assert env.action_masks()[2]
        *_, info = env.step(2)
        assert info["cost"] == 2.0 + 2.0 + 20.0 + 1.0  # S2's summary with its first draw
        assert not env.action_masks()[2]  # S2 is spent, and nothing distilled r3
    assert seen == {"d1", "d2"}


def test_the_next_round_needs_every_refinement_of_the_round_in_use() -> None:
    log = workspace_log()
    env = ReplayEnv(log, cost_unit=1.0, lambda_=0.0)
    for seed in range(40):
        _, info = env.reset(seed=seed)
        *_, info = env.step(1)
        if drawn_ids(env, log, 1) == ["d1"]:
            break
    else:
        pytest.fail("no seed drew d1 first")
    costs = []
    for _ in range(3):
        assert env.action_masks()[2]
        spent = info["cost"]
        *_, info = env.step(2)
        costs.append(info["cost"] - spent)
    assert costs == [10.0 + 1.0, 1.0, 30.0 + 1.0]  # S1 opens, then S3 (round 2)
    assert not env.action_masks()[2]
    *_, info = env.step(STOP)
    assert info["correct"] == 1.0 and info["n_refines"] == 3  # votes a, a, a, c


def tournament_log() -> AttemptLog:
    """Drafts d1 (a, right), d2 (b, wrong), d3 (b, wrong). Event t1 saw {d1, d2}: b won
    (votes cost 5 + 6); t2, after t1, saw {d1, d2, d3}: a won, d2 and its twin re-scored."""
    def draft(aid: str, answer: str, correct: int) -> dict:
        return {"query_id": "q", "attempt_id": aid, "answer": answer, "correct": correct,
                "cost": 2.0, "score": 0.5}  # a tournament score: never replayed as absolute

    def vote(event: str, cost: float) -> dict:
        return {"query_id": "q", "attempt_id": f"v{cost:g}", "kind": "verify",
                "answer": None, "correct": 0,
                "cost": cost, "role": "vote", "event": event}

    def event(name: str, after: str | None, drawn: list[str], scores: dict) -> dict:
        return {"query_id": "q", "attempt_id": name, "kind": "verify", "answer": None,
                "correct": 0,
                "cost": 0.0, "role": "verification", "event": name, "after": after,
                "drawn": json.dumps(drawn), "scores": json.dumps(scores)}

    return make_log([
        draft("d1", "a", 1), draft("d2", "b", 0), draft("d3", "b", 0),
        vote("t1", 5.0), vote("t1", 6.0), event("t1", None, ["d1", "d2"],
                                                {"d1": 0.0, "d2": 1.0}),
        vote("t2", 7.0), event("t2", "t1", ["d1", "d2", "d3"],
                               {"d3": 0.0, "d1": 1.0, "d2": 0.5}),
    ])


def test_tournament_verify_applies_the_logged_event_of_exactly_the_drawn_set() -> None:
    log = tournament_log()
    env = ReplayEnv(log, cost_unit=1.0, lambda_=0.0)
    assert env.pools.supports_verify and np.isnan(env.pools.cand_score).all()
    outcomes = set()
    for seed in range(16):
        env.reset(seed=seed)
        env.step(1)
        assert not env.action_masks()[3]  # no event saw one draft alone
        env.step(1)
        pair = set(drawn_ids(env, log, 2))
        assert env.action_masks()[3] == (pair == {"d1", "d2"})
        if pair != {"d1", "d2"}:
            continue
        *_, info = env.step(3)
        assert info["cost"] == 4.0 + 11.0  # two drafts, t1's two votes
        assert env.query_state.verified == 2 and env.query_state.best_score == 1.0
        env.step(1)  # d3
        assert env.action_masks()[3]  # t2 follows t1 on {d1, d2, d3}
        *_, info = env.step(3)
        assert info["cost"] == 6.0 + 11.0 + 7.0
        assert env.query_state.verified == 3
        *_, info = env.step(STOP)
        outcomes.add(info["correct"])
        assert info["correct"] == 1.0  # t2's winner a, re-scores included
    assert outcomes == {1.0}


def test_verdicts_cost_what_the_log_says_and_unjudged_drafts_mask_verify() -> None:
    """s1 (verdict 0.9, cost 4), s2 (verdict NaN, cost 5: still paid), s3 never judged."""
    def verdict(target: str, score: float | None, cost: float) -> dict:
        return {"query_id": "q", "attempt_id": f"v-{target}", "kind": "verify",
                "answer": None, "correct": 0, "cost": cost, "score": score,
                "role": "verdict", "target": target}

    log = make_log([
        {"query_id": "q", "attempt_id": "s1", "answer": "a", "correct": 1, "score": 0.9},
        {"query_id": "q", "attempt_id": "s2", "answer": "b", "correct": 0},
        {"query_id": "q", "attempt_id": "s3", "answer": "b", "correct": 0},
        verdict("s1", 0.9, 4.0), verdict("s2", None, 5.0),
    ])
    env = ReplayEnv(log, cost_unit=1.0, lambda_=0.0, verify_cost=100.0)
    for seed in range(12):
        env.reset(seed=seed)
        env.step(1)
        first = drawn_ids(env, log, 1)[0]
        assert env.action_masks()[3] == (first != "s3")
        if first == "s3":
            continue
        *_, info = env.step(3)
        assert info["cost"] == 1.0 + {"s1": 4.0, "s2": 5.0}[first]
        assert env.query_state.verified == 1


def verify_log() -> AttemptLog:
    """One query: the right answer a once (score .9), the wrong b three times (score .2)."""
    rows = [{"query_id": "q", "answer": "a", "correct": 1, "score": 0.9}]
    rows += [{"query_id": "q", "answer": "b", "correct": 0, "score": 0.2}] * 3
    rows += [{"query_id": "q", "answer": None, "correct": 0, "score": 1.0}]
    return make_log(rows)


def test_verify_reveals_scores_and_picks_the_best_verified() -> None:
    env = ReplayEnv(verify_log(), verify_cost=0.5, lambda_=0.1)
    for seed in range(5):
        env.reset(seed=seed)
        assert not env.action_masks()[3]  # nothing drawn: nothing to verify
        for _ in range(5):
            env.step(1)
        obs, reward, _, _, info = env.step(3)
        assert reward == pytest.approx(-0.1 * 0.5 * 5)  # five newly verified, cost unit 1
        assert not info["action_mask"][3]  # nothing left to verify
        names = feature_names(("default",))
        assert obs[names.index("has_verified")] == 1.0
        # The answerless candidate scored 1.0 but cannot be returned: the best is a.
        assert obs[names.index("best_verified_score")] == pytest.approx(0.9)
        *_, info = env.step(STOP)
        assert info["correct"] == 1.0 and info["n_verified"] == 5  # majority would say b


def test_verify_only_what_is_drawn_and_ties_share_credit() -> None:
    log = make_log([
        {"query_id": "q", "answer": "a", "correct": 1, "score": 0.5},
        {"query_id": "q", "answer": "b", "correct": 0, "score": 0.5},
    ])
    env = ReplayEnv(log)
    env.reset(seed=0)
    env.step(1)
    env.step(3)  # verify the first draw only
    env.step(1)
    assert env.action_masks()[3]  # the second draw is not verified yet
    *_, info = env.step(3)
    assert info["action_mask"][3] == 0
    *_, info = env.step(STOP)
    assert info["correct"] == 0.5 and info["n_verified"] == 2


def test_answerless_verified_candidates_fall_back_to_the_vote() -> None:
    log = make_log([
        {"query_id": "q", "answer": None, "correct": 0, "score": 0.9},
        {"query_id": "q", "answer": "a", "correct": 1},
    ])
    env = ReplayEnv(log)
    env.reset(seed=0)
    env.step(1)
    env.step(1)
    *_, info = env.step(3)
    assert info["action_mask"][3] == 0
    *_, info = env.step(STOP)
    assert info["correct"] == 1.0 and info["n_verified"] == 1


def test_majority_ties_share_credit_and_nothing_scores_zero(tiny_log: AttemptLog) -> None:
    env = ReplayEnv(tiny_log)
    env.reset(seed=0, options={"query": 0})
    for _ in range(4):
        env.step(1)
    *_, info = env.step(STOP)
    assert info["correct"] == 0.5  # a, a, b, b
    env.reset(seed=0, options={"query": 0})
    _, reward, _, _, info = env.step(STOP)
    assert reward == info["correct"] == 0.0


def test_max_samples_caps_draws(rich_log: AttemptLog) -> None:
    env = ReplayEnv(rich_log, max_samples=2)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(100):
        steps = random_episode(env, rng)
        info = steps[-1][3]
        assert info["n_samples"] + info["n_refines"] <= 2
        assert not info["invalid_action"]


# ------------------------------------------------------------------ rewards, settings
def test_return_is_correctness_minus_priced_cost(rich_log: AttemptLog) -> None:
    env = ReplayEnv(rich_log, verify_cost=1.5, lambda_range=(0.05, 0.5))
    unit = env.settings.cost_unit
    assert unit == pytest.approx(env.pools.mean_sample_cost)
    rng = np.random.default_rng(3)
    env.reset(seed=3)
    for _ in range(200):
        steps = random_episode(env, rng)
        info = steps[-1][3]
        total = sum(step[2] for step in steps)
        assert total == pytest.approx(info["correct"] - info["lambda"] * info["cost"] / unit)
        assert 0.05 <= info["lambda"] <= 0.5
        observed = steps[-1][1][feature_index(env, 'lambda')]
        assert observed == pytest.approx(info["lambda"])  # lambda is observed


def test_lambda_range_draws_per_episode(tiny_log: AttemptLog) -> None:
    env = ReplayEnv(tiny_log, lambda_range=(0.001, 1.0), lambda_sampling="log-uniform")
    lambdas = [env.reset(seed=seed)[1]["lambda"] for seed in range(400)]
    assert min(lambdas) >= 0.001 and max(lambdas) <= 1.0
    # Log-uniform: about half of the draws below the geometric mean 0.0316.
    assert 0.4 < np.mean(np.array(lambdas) < 10 ** -1.5) < 0.6


def test_queries_restrict_episodes_and_prior_is_observed(rich_log: AttemptLog) -> None:
    prior = np.linspace(0, 1, rich_log.n_queries * 2).reshape(-1, 2)
    env = ReplayEnv(rich_log, queries=[3, 5], prior=prior)
    seen = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        seen.add(info["query"])
        np.testing.assert_allclose(obs[:2], prior[info["query"]], rtol=1e-6)
    assert seen == {3, 5}
    _, info = env.reset(options={"query": 0})  # forcing may leave the subset
    assert info["query"] == 0
    with pytest.raises(ParameterError, match="query"):
        env.reset(options={"query": rich_log.n_queries})


def test_constructor_errors(tiny_log: AttemptLog) -> None:
    with pytest.raises(ParameterError, match="render_mode"):
        ReplayEnv(tiny_log, render_mode="human")
    with pytest.raises(ParameterError, match="lambda_"):
        ReplayEnv(tiny_log, lambda_=-1)


PUBLIC_SETS = {
    "reasoning-gym": ("reasoning_gym/samples.jsonl.gz", {"difficulty": "easy"}),
    "codet": ("codet_humaneval", {}),
    "swe-bench-pro": ("swe_bench_pro/agent_runs.csv.gz", {}),
    "mot-cascade": ("mot_cascade/raw", {"tasks": "gsm", "models": "llama-2-13b"}),
}


@pytest.mark.public_logs
@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(PUBLIC_SETS))
def test_checked_on_every_public_set(fmt: str, public_logs) -> None:
    """check_env on each shared public set, converted by its own converter."""
    from allocator.converters import convert

    folder, options = PUBLIC_SETS[fmt]
    log, _ = convert(public_logs / folder, fmt, **options)
    env = make(log, lambda_range=(0.0, 0.5))
    check_env(env.unwrapped)
    assert env.action_space.n == len(log.arms) + 3
    # Episodes end, and draws never exceed a query's pool.
    env.reset(seed=0)
    for _ in range(50):
        mask = env.unwrapped.action_masks()
        action = int(np.flatnonzero(mask)[-1])
        _, _, terminated, _, info = env.step(action)
        if terminated:
            assert info["n_samples"] <= np.diff(log.offsets).max()
            env.reset()

"""The budget oracle: sessions decide as the learned policy does in replay; masks; the
up-front budget and the batch allocation; loading (paths, MLflow URIs, tampering) light.

A real (small) MaskablePPO is trained on a simulated log (about 2 s on one thread), with
the true per-arm accuracies of the simulation as its prior, so that the states of
different queries differ and the decisions depend on them. A scripted bundle (hand-made
weights: a constant preference over the actions) makes the mask tests exact.

``allocator.oracle`` (which imports ``allocator.learned``, registering the policy
``"learned"``) is imported inside the tests, as in ``tests/allocator/test_bundle.py``.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import allocator
from allocator.actions import mask_bits, n_actions
from allocator.bundle import WEIGHTS_FILE, write_bundle
from allocator.errors import AllocatorError, BundleError, ParameterError
from allocator.featurizer import n_features
from allocator.logs.synthetic import SyntheticConfig, generate, p_correct
from allocator.logs.table import AttemptLog

REPO = Path(__file__).resolve().parents[2]
LAMBDA_RANGE = (0.0, 0.2)
TRAIN = np.arange(100)
VALIDATION = np.arange(100, 150)


@pytest.fixture(scope="module")
def oracle_module() -> ModuleType:
    return importlib.import_module("allocator.oracle")


# ------------------------------------------------------------------ fixtures
@dataclass
class Trained:
    log: AttemptLog
    prior: np.ndarray
    bundle: Path
    predictor: object


def true_prior(log: AttemptLog, config: SyntheticConfig) -> np.ndarray:
    """The simulation's per-query, per-arm accuracy (a perfect difficulty predictor)."""
    difficulty = np.asarray(log.queries.metadata["difficulty"], dtype=np.float64)
    skills = {arm.name: arm.skill for arm in config.arms}
    return np.column_stack([p_correct(skills[arm], difficulty, config.sharpness)
                            for arm in log.arms])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    pytest.importorskip("torch")
    from tiny_policy import fit_tiny_predictor, train_tiny_policy

    from allocator.training.rl.export import export_bundle

    folder = tmp_path_factory.mktemp("oracle")
    config = SyntheticConfig(n_queries=150)
    log = generate(config)
    prior = true_prior(log, config)
    predictor = fit_tiny_predictor(log, TRAIN)
    model, venv = train_tiny_policy(log, prior, queries=TRAIN)
    bundle = export_bundle(model, folder / "bundle", arms=venv.pools.arms,
                           lambda_range=LAMBDA_RANGE, cost_unit=venv.settings.cost_unit,
                           log_fingerprint=log.fingerprint(),
                           predictor_dir=predictor.save(folder / "predictor"))
    return Trained(log, prior, bundle, predictor)


#: The scripted bundle's arms and its preference (logits) over
#: [STOP, SAMPLE(a), SAMPLE(b), REFINE, VERIFY]: VERIFY > REFINE > b > a > STOP.
SCRIPTED_ARMS = ("a", "b")
PREFERENCE = np.array([0.0, 1.0, 2.0, 3.0, 4.0], dtype=np.float32)


def write_scripted(path: Path, *, preference: np.ndarray = PREFERENCE,
                   arms: tuple[str, ...] = SCRIPTED_ARMS, **extra: object) -> Path:
    """A bundle whose policy always prefers the same allowed action (one dense layer)."""
    width, actions = n_features(len(arms)), n_actions(len(arms))
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": preference.astype(np.float32)}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    manifest = {"arms": list(arms), "lambda_range": [0.0, 0.4], "cost_unit": 2.0,
                "network": network, "normalization": None, "run_id": None,
                "log_fingerprint": "scripted", **extra}
    return write_bundle(path, weights=weights, manifest=manifest)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory, oracle_module: ModuleType):
    path = write_scripted(tmp_path_factory.mktemp("scripted") / "bundle",
                          arm_mean_cost={"a": 1.0, "b": 3.0})
    return oracle_module.load(path)


def drive(session, result_of, limit: int = 200) -> list:
    """Run a session to STOP; ``result_of(action)`` gives the AttemptResult or scores."""
    actions = []
    for _ in range(limit):
        action = session.next_action()
        actions.append(action)
        if action.kind == "stop":
            return actions
        if action.kind == "verify":
            session.verify(None, cost=0.5)
        else:
            session.observe(result_of(action))
    raise AssertionError("the session did not stop")


# ------------------------------------------------------------------ replay equality
def answer_text(log: AttemptLog, pools, query: int, code: int | None) -> str | None:
    """The log's answer string of a query-local answer code."""
    if code is None:
        return None
    return str(log.answers[pools.answer_code[pools.answer_offsets[query] + code]])


@pytest.mark.slow
@pytest.mark.parametrize("lam", [0.0, 0.07, 0.2])
def test_sessions_decide_as_the_policy_in_the_evaluators_episodes(
        trained: Trained, oracle_module: ModuleType, lam: float) -> None:
    """Each evaluator episode replayed by a ReplayEnv seeded as the evaluator seeds it
    (seed * 1_000_003 + episode), its draws fed to a Session: same masks, features and
    decisions at every step, the same cost and attempts as the evaluator reports."""
    from allocator.envs import ReplayEnv
    from allocator.training.evaluation.replay import ReplayEvaluator

    log, prior = trained.log, trained.prior
    oracle = oracle_module.load(trained.bundle)
    orders, seed = 2, 3
    evaluator = ReplayEvaluator(log, VALIDATION, n_orders=orders, seed=seed, lambda_=lam,
                                prior=prior)
    results = evaluator.run(oracle.policy)
    env = ReplayEnv(evaluator.pools, lambda_=lam, prior=prior)
    pools = env.pools
    kinds = set()
    for episode, query in enumerate(np.repeat(VALIDATION, orders)):
        query = int(query)
        env.reset(seed=seed * 1_000_003 + episode, options={"query": query})
        session = oracle.session(lambda_=lam, prior=prior[query], max_samples_per_arm=dict(
            zip(log.arms, pools.arm_count[query].tolist(), strict=True)))
        info: dict = {}
        while True:
            assert np.array_equal(session.allowed_actions(), env.action_masks())
            action = session.next_action()
            expected = oracle.policy.act(env.query_state.to_batch(), env.action_masks()[None])
            assert action.index == int(expected[0])
            kinds.add(str(action))
            spent = info.get("cost", 0.0)
            _, _, terminated, _, info = env.step(action.index)
            if terminated:
                break
            state = env.query_state
            session.observe(oracle_module.AttemptResult(
                "sample", action.arm, answer_text(log, pools, query, state.answers[-1]),
                info["cost"] - spent))
            np.testing.assert_array_equal(session.state.features(), state.features())
        assert action.kind == "stop" and session.done
        row, column = divmod(episode, orders)
        assert session.cost_spent == pytest.approx(results.cost[row, column], rel=1e-12)
        assert session.state.drawn == results.samples[row, column]
        tied = [answer_text(log, pools, query, code)
                for code in env.query_state.final_answers()]
        assert (session.final_answer() in tied) if tied else session.final_answer() is None
        if len(tied) == 1:
            assert info["correct"] == results.correct[row, column]
    assert "STOP" in kinds and len(kinds) >= 2  # the policy samples as well as stops


@pytest.mark.slow
def test_the_learned_policy_respects_the_executors_limits(trained: Trained,
                                                          oracle_module: ModuleType) -> None:
    oracle = oracle_module.load(trained.bundle)
    rng = np.random.default_rng(0)
    asked = {arm: 0 for arm in oracle.arms}
    for trial in range(60):
        served = [oracle.arms[trial % 2]] if trial % 3 else None
        cap = int(rng.integers(0, 4)) if trial % 4 == 0 else None
        session = oracle.session(prior=rng.random(2), lambda_=float(rng.uniform(0, 0.05)),
                                 arms=served, max_samples=cap)
        actions = drive(session, lambda action: oracle_module.AttemptResult(
            action.kind, action.arm, str(rng.integers(0, 3)), float(rng.uniform(0.5, 9))))
        for action in actions[:-1]:
            assert action.kind == "sample"
            assert served is None or action.arm in served
            asked[action.arm] += 1
        assert cap is None or session.state.drawn <= cap
    assert all(count > 0 for count in asked.values()), asked  # not vacuous


@pytest.mark.slow
def test_the_single_state_path_decides_as_the_batch_path(trained: Trained,
                                                         oracle_module: ModuleType) -> None:
    """``LearnedPolicy.act_one`` and ``decision_function`` (scalar featurizer, the
    compiled kernel where built: what sessions call) against ``act`` on the same states
    as a batch, random masks included."""
    from allocator.featurizer import QueryState

    policy = oracle_module.load(trained.bundle).policy
    rng = np.random.default_rng(5)
    states, masks = [], []
    for _ in range(3_000):
        state = QueryState(2, prior=rng.random(2), lam=float(rng.uniform(*LAMBDA_RANGE)))
        for _ in range(int(rng.integers(0, 25))):
            answer = None if rng.random() < 0.1 else str(rng.integers(0, 4))
            state.add_sample(int(rng.integers(2)), answer, cost=float(rng.uniform(0.5, 3)))
        mask = rng.random(n_actions(2)) < 0.6
        mask[0] = True
        states.append(state)
        masks.append(mask)
    one_by_one = [policy.act_one(state, mask) for state, mask in zip(states, masks, strict=True)]
    batched = [int(policy.act(state.to_batch(), mask[None])[0])
               for state, mask in zip(states, masks, strict=True)]
    assert one_by_one == batched
    decide = policy.decision_function(2)  # what a session calls: the mask as a bit set
    by_session = [decide(state, mask_bits(mask))
                  for state, mask in zip(states, masks, strict=True)]
    assert by_session == batched
    assert len(set(one_by_one)) >= 2  # not vacuous: the decisions vary


#: Rewrites of a loaded bundle (issue 14, item 14): (name, keyword arguments of
#: write_scripted). The old oracle must keep deciding as loaded after each.
REWRITES = [
    ("same arms, another preference", {"preference": np.array([0.0, 2.0, 1.0, 3.0, 4.0])}),
    ("other arms", {"arms": ("x", "y", "z"),
                    "preference": np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])}),
]


def test_a_loaded_oracle_is_immutable(tmp_path: Path, oracle_module: ModuleType) -> None:
    """A loaded oracle keeps exactly what it loaded (manifest, network, one read of the
    bundle), however long after its bundle is rewritten on disk; a new load reads the new
    bundle (issue 14, item 14: it used to switch networks ~1 s later but keep the old
    manifest, so decisions failed when the arms changed)."""
    loaded = {}
    for name, rewrite in REWRITES:
        path = write_scripted(tmp_path / name.replace(" ", "-").replace(",", ""))
        oracle = oracle_module.load(path)
        assert oracle.policy.bundle is oracle.bundle  # one read, one hash check
        session = oracle.session()
        assert str(session.next_action()) == "SAMPLE(b)"  # VERIFY and REFINE not allowed
        session.observe(oracle_module.AttemptResult("sample", "b", "7", 1.0))
        loaded[name] = (path, oracle, session, oracle.policy.network)
        write_scripted(path, **rewrite)
    time.sleep(1.2)  # past the old path cache's re-check delay (1 s)
    for name, (path, oracle, session, network) in loaded.items():
        assert oracle.arms == SCRIPTED_ARMS, name
        assert oracle.policy.network is network, name
        assert str(session.next_action()) == "SAMPLE(b)", name
        assert str(oracle.session().next_action()) == "SAMPLE(b)", name
        assert set(oracle.budget(prior=[0.6, 0.6], lambda_=0.0)) == set(SCRIPTED_ARMS), name
        fresh = oracle_module.load(path)
        assert fresh.arms == REWRITES_ARMS[name], name
        assert str(fresh.session().next_action()).startswith("SAMPLE("), name
    renewed = oracle_module.load(loaded["same arms, another preference"][0])
    assert str(renewed.session().next_action()) == "SAMPLE(a)"  # the new preference


REWRITES_ARMS = {name: tuple(rewrite.get("arms", SCRIPTED_ARMS)) for name, rewrite in REWRITES}


# ------------------------------------------------------------------ masks (scripted)
def answer_b(oracle_module: ModuleType):
    return lambda action: oracle_module.AttemptResult(action.kind, action.arm, "7", 1.0,
                                                      score=0.5)


def test_arms_not_served_are_never_asked(scripted, oracle_module: ModuleType) -> None:
    session = scripted.session(arms=["a"], max_samples=3)
    kinds = [str(a) for a in drive(session, answer_b(oracle_module))]
    assert kinds == ["SAMPLE(a)"] * 3 + ["STOP"]
    assert session.cost_spent == 3.0 and session.final_answer() == "7"


def test_refine_and_verify_only_when_supported(scripted, oracle_module: ModuleType) -> None:
    plain = drive(scripted.session(max_samples=2), answer_b(oracle_module))
    assert [str(a) for a in plain] == ["SAMPLE(b)", "SAMPLE(b)", "STOP"]
    refine = drive(scripted.session(max_samples=2, supports_refine=True),
                   answer_b(oracle_module))
    # REFINE (preferred) is masked until a draft exists to be conditioned on.
    assert [str(a) for a in refine] == ["SAMPLE(b)", "REFINE", "STOP"]
    session = scripted.session(max_samples=2, supports_verify=True)
    verify = drive(session, answer_b(oracle_module))
    # VERIFY is allowed only once something new was drawn, so it alternates with SAMPLE.
    assert [str(a) for a in verify] == ["SAMPLE(b)", "VERIFY", "SAMPLE(b)", "VERIFY", "STOP"]
    assert session.state.verified == 2 and session.state.best_score == 0.5
    assert session.cost_spent == 2 * 1.0 + 2 * 0.5


def test_max_samples_per_arm_and_in_all(scripted, oracle_module: ModuleType) -> None:
    session = scripted.session(max_samples=3, max_samples_per_arm={"b": 1})
    assert [str(a) for a in drive(session, answer_b(oracle_module))] == [
        "SAMPLE(b)", "SAMPLE(a)", "SAMPLE(a)", "STOP"]
    assert scripted.session(max_samples=0).next_action().kind == "stop"
    with pytest.raises(ParameterError, match="max_samples_per_arm"):
        scripted.session(max_samples_per_arm={"c": 1})
    with pytest.raises(ParameterError, match="'arms'"):
        scripted.session(arms=["c"])


def test_the_session_records_what_the_executor_did(scripted,
                                                   oracle_module: ModuleType) -> None:
    result = oracle_module.AttemptResult
    session = scripted.session(max_samples=10)
    assert session.next_action().arm == "b"
    assert session.next_action().arm == "b"  # asking again: the same, recorded once
    session.observe(result("sample", "a", "x", 2.0))  # not what was asked: allowed
    assert session.state.samples.tolist() == [1, 0]
    assert session.next_action().arm == "b"
    session.observe(result("sample", None, "y", 1.0))  # no arm: the arm asked (b)
    assert session.state.samples.tolist() == [1, 1]
    session.observe(result("refine", None, None, 1.0))  # no answer: no vote
    assert [type(e).__name__ for e in session.history] == [
        "Action", "AttemptResult", "Action", "AttemptResult", "AttemptResult"]
    assert session.state.cost == pytest.approx(4.0 / scripted.cost_unit)
    with pytest.raises(ParameterError, match=r"result\.arm"):
        session.observe(result("sample", "z", "x", 1.0))
    with pytest.raises(ParameterError, match="'kind'"):
        result("verify", None, "x", 1.0)
    for cost in (-1.0, float("nan"), float("inf"), None):  # the float fast path included
        with pytest.raises(ParameterError, match="'cost'"):
            result("sample", "a", "x", cost)
    assert result("sample", "a", "x", 2).cost == 2.0 and type(result(cost=2).cost) is float
    for answer in (["x"], ("x", ["y"]), {"x": 1}):  # unhashable, tuples holding lists too
        with pytest.raises(ParameterError, match="'answer'"):
            result("sample", "a", answer, 1.0)
    with pytest.raises(ParameterError, match="scores"):
        session.verify({9: 1.0})


def test_observing_after_stop_is_refused(scripted, oracle_module: ModuleType) -> None:
    session = scripted.session(max_samples=0)
    assert session.next_action().kind == "stop" and session.done
    assert session.next_action().kind == "stop"
    with pytest.raises(AllocatorError, match="stopped"):
        session.observe(oracle_module.AttemptResult("sample", "a", "x", 1.0))
    with pytest.raises(AllocatorError, match="stopped"):
        session.verify({})


def test_final_answer_majority_first_seen_then_best_verified(
        scripted, oracle_module: ModuleType) -> None:
    session = scripted.session()
    assert session.final_answer() is None
    for answer in ("x", None, "y", "y", "x"):
        session.observe(oracle_module.AttemptResult("sample", "a", answer, 1.0))
    assert session.final_answer() == "x"  # tied 2-2: the answer seen first
    session.observe(oracle_module.AttemptResult("sample", "a", "y", 1.0))
    assert session.final_answer() == "y"  # majority
    session.verify({0: 0.9, 2: 0.3}, cost=1.0)
    assert session.final_answer() == "x"  # best verified wins over the vote


# ------------------------------------------------------------------ lambda and prior
def test_lambda_defaults_ranges_and_target_cost_needs_calibration(scripted) -> None:
    assert scripted.default_lambda == pytest.approx(0.2)  # middle of [0, 0.4]
    assert scripted.session().lambda_ == pytest.approx(0.2)
    assert scripted.session(lambda_=0.4).state.lam == 0.4
    assert scripted.calibration_table is None
    with pytest.raises(ParameterError, match="calibrat"):
        scripted.session(target_cost=3.0)
    with pytest.raises(ParameterError, match="lambda_"):
        scripted.session(lambda_=0.5)
    with pytest.raises(ParameterError, match="target_cost"):
        scripted.session(lambda_=0.1, target_cost=3.0)
    with pytest.raises(ParameterError, match="prior"):
        scripted.session(prior=[0.5, 1.5])
    np.testing.assert_array_equal(scripted.session().prior, [0.5, 0.5])
    np.testing.assert_array_equal(scripted.session("no predictor here").prior, [0.5, 0.5])


@pytest.mark.slow
def test_the_prior_comes_from_the_bundled_predictor(trained: Trained,
                                                    oracle_module: ModuleType) -> None:
    oracle = oracle_module.load(trained.bundle)
    log, queries = trained.log, VALIDATION[:5]
    expected = trained.predictor.predict(log, queries)  # arms in the log's order
    for row, query in enumerate(queries):
        text = str(log.queries.text[query])
        metadata = {"task": log.queries.metadata["task"][query]}
        session = oracle.session(text, metadata=metadata, lambda_=0.1)
        np.testing.assert_allclose(session.prior, expected[row], rtol=0, atol=1e-12)
        explicit = oracle.session(text, prior=[0.1, 0.2], metadata=metadata)
        np.testing.assert_array_equal(explicit.prior, [0.1, 0.2])  # explicit wins
    texts = [str(t) for t in log.queries.text[queries]]
    rows = [{"task": log.queries.metadata["task"][q]} for q in queries]
    np.testing.assert_allclose(oracle.predict_priors(texts, rows), expected, atol=1e-12)
    assert oracle.allocate(texts, 30.0, metadata=rows) == oracle.allocate(
        len(texts), 30.0, priors=oracle.predict_priors(texts, rows))
    no_task = oracle.session("What is 2 + 2?").prior  # unknown metadata: missing values
    assert no_task.shape == (2,) and ((no_task >= 0) & (no_task <= 1)).all()


# ------------------------------------------------------------------ the model
def exact_majority(p: float, n: int) -> float:
    """P(more right votes than wrong) + half P(tie), by the binomial formula."""
    if n == 0:
        return 0.0
    total = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)
                if 2 * k > n)
    if n % 2 == 0:
        total += 0.5 * math.comb(n, n // 2) * (p * (1 - p)) ** (n // 2)
    return total


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.integers(1, 30))
def test_majority_accuracy_is_the_binomial_closed_form(p: float, n_max: int) -> None:
    from allocator.oracle import majority_accuracy

    curve = majority_accuracy(np.array([p]), n_max)[0]
    expected = [exact_majority(p, n) for n in range(n_max + 1)]
    np.testing.assert_allclose(curve, expected, rtol=1e-9, atol=1e-12)
    assert np.allclose(curve[2::2], curve[1:-1:2][: len(curve[2::2])])  # acc(2k)=acc(2k-1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=2), st.floats(0, 0.4),
       st.integers(1, 25), st.sampled_from([None, ["a"], ["b"]]))
def test_budget_maximises_the_closed_form_reward(scripted, prior, lam, n_max, served) -> None:
    budget = scripted.budget(prior=prior, lambda_=lam, max_samples=n_max, arms=served)
    assert set(budget) == set(SCRIPTED_ARMS)
    chosen = [(arm, n) for arm, n in budget.items() if n]
    assert len(chosen) == 1 and 1 <= chosen[0][1] <= n_max
    arm, n = chosen[0]
    assert served is None or arm in served
    costs = scripted.arm_costs  # a: 1, b: 3; cost unit 2

    def reward(arm: str, n: int) -> float:
        p = prior[SCRIPTED_ARMS.index(arm)]
        return exact_majority(p, n) - lam * n * costs[arm] / scripted.cost_unit

    best = max(reward(a, k) for a in (served or SCRIPTED_ARMS) for k in range(1, n_max + 1))
    assert reward(arm, n) == pytest.approx(best, abs=1e-9)


def test_budget_examples(scripted) -> None:
    assert scripted.budget(prior=[0.7, 0.7], lambda_=0.0, max_samples=10) == {"a": 9, "b": 0}
    assert scripted.budget(prior=[0.7, 0.95], lambda_=0.4) == {"a": 1, "b": 0}
    assert scripted.budget(prior=[0.3, 0.3], lambda_=0.0) == {"a": 1, "b": 0}
    assert scripted.budget(prior=[0.3, 0.9], lambda_=0.0, max_samples=5) == {"a": 0, "b": 5}
    assert scripted.arm_costs == {"a": 1.0, "b": 3.0}


# ------------------------------------------------------------------ allocation
@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8).flatmap(lambda q: st.tuples(
    st.lists(st.lists(st.floats(0, 1), min_size=2, max_size=2), min_size=q, max_size=q),
    st.floats(0, 60), st.integers(1, 12))))
def test_allocate_never_exceeds_the_total(scripted, case) -> None:
    priors, total, n_max = case
    allocation = scripted.allocate(len(priors), total, priors=np.array(priors),
                                   max_samples=n_max)
    assert len(allocation) == len(priors)
    used = {arm for row in allocation for arm, n in row.items() if n}
    assert len(used) <= 1  # one arm for the batch
    spent = sum(n * scripted.arm_costs[arm] for row in allocation for arm, n in row.items())
    assert spent <= total
    assert all(0 <= n <= n_max for row in allocation for n in row.values())


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 3).flatmap(lambda q: st.tuples(
    st.lists(st.floats(0, 1), min_size=q, max_size=q), st.integers(1, 5),
    st.integers(0, 9))))
def test_greedy_equals_the_brute_force_optimum(case) -> None:
    from allocator.oracle import concave_majorant_gains, greedy_allocation, majority_accuracy

    p, n_max, units = case
    curves = majority_accuracy(np.array(p), n_max)
    gains = concave_majorant_gains(curves)
    hull = np.concatenate([curves[:, :1], curves[:, :1] + np.cumsum(gains, axis=1)], axis=1)
    assert (hull >= curves - 1e-12).all()  # a majorant...
    assert (np.diff(gains, axis=1) <= 0).all()  # ... and concave
    counts = greedy_allocation(gains, units)
    assert counts.sum() <= units
    value = hull[np.arange(len(p)), counts].sum()
    best = max(hull[np.arange(len(p)), list(n)].sum()
               for n in itertools.product(range(n_max + 1), repeat=len(p))
               if sum(n) <= units)
    # Greedy never buys a gain of 1e-12 or less (not worth a sample): at most that much
    # per unit of budget separates it from the brute-force optimum.
    assert value == pytest.approx(best, abs=1e-12 * max(units, 1) + 1e-15)


def test_allocate_spends_where_a_sample_helps_most(scripted) -> None:
    priors = np.array([[0.99, 0.99], [0.65, 0.65], [0.2, 0.2], [0.55, 0.55]])
    allocation = scripted.allocate(4, 12.0, priors=priors, arm="a", max_samples=9)
    counts = [row["a"] for row in allocation]
    assert sum(counts) <= 12 and all(row["b"] == 0 for row in allocation)
    assert counts[1] > counts[0] and counts[1] > counts[2] and counts[2] <= 1
    assert scripted.allocate(4, 0.0, priors=priors) == [{"a": 0, "b": 0}] * 4
    with pytest.raises(ParameterError, match="priors"):
        scripted.allocate(3, 10.0, priors=priors)
    with pytest.raises(ParameterError, match="total_budget"):
        scripted.allocate(4, -1.0, priors=priors)


# ------------------------------------------------------------------ loading
def test_load_refuses_a_tampered_bundle(tmp_path: Path, oracle_module: ModuleType) -> None:
    path = write_scripted(tmp_path / "bundle")
    assert allocator.load(path).arms == SCRIPTED_ARMS
    weights = path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        allocator.load(path)
    with pytest.raises(BundleError, match="no such bundle"):
        allocator.load(tmp_path / "missing")


def test_the_public_api() -> None:
    assert "load" in allocator.__all__
    module = importlib.import_module("allocator.oracle")
    assert sorted(module.__all__) == sorted([
        "Action", "AttemptResult", "BudgetOracle", "Session", "Verification",
        "concave_majorant_gains", "greedy_allocation", "load", "majority_accuracy"])


def test_the_runtime_path_imports_no_heavy_library(tmp_path: Path) -> None:
    path = write_scripted(tmp_path / "bundle")
    code = f"""
import sys
import allocator
from allocator.oracle import AttemptResult
oracle = allocator.load({str(path)!r})
session = oracle.session("a query", lambda_=0.1, max_samples=3)
while (action := session.next_action()).kind != "stop":
    session.observe(AttemptResult(action.kind, action.arm, "42", 1.0))
assert session.final_answer() == "42"
oracle.budget(prior=[0.6, 0.7]); oracle.allocate(3, 10.0)
heavy = [m for m in ("torch", "stable_baselines3", "sb3_contrib", "mlflow", "sklearn",
                     "gymnasium", "fastapi") if m in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_load_resolves_mlflow_run_and_model_uris(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # nothing written in the working dir
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    from mlflow import MlflowClient

    bundle = write_scripted(tmp_path / "bundle")
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("oracle", artifact_location=str(tmp_path / "art"))
    run = client.create_run(experiment).info.run_id
    client.log_artifacts(run, str(bundle), "model/bundle")
    client.set_terminated(run)
    client.create_registered_model("allocator-test")
    version = client.create_model_version("allocator-test", source=f"runs:/{run}/model",
                                          run_id=run)
    client.set_registered_model_alias("allocator-test", "champion", version.version)
    by_run = allocator.load(f"runs:/{run}/model", tracking_uri=uri, dst_path=tmp_path / "d1")
    by_alias = allocator.load("models:/allocator-test@champion", tracking_uri=uri,
                              dst_path=tmp_path / "d2")
    for oracle in (by_run, by_alias):
        assert oracle.arms == SCRIPTED_ARMS
        assert json.loads((oracle.bundle.path / "manifest.json").read_text())["arms"] == [
            "a", "b"]
    client.log_text(run, "not a bundle", "other/readme.txt")
    with pytest.raises(BundleError, match="no policy bundle"):
        allocator.load(f"runs:/{run}/other", tracking_uri=uri, dst_path=tmp_path / "d3")

"""The oracle's defaults: one prior rule everywhere, the sample cap, the target-cost range,
and their description (``BudgetOracle.defaults``, ``allocator inspect``, ``/v1/health``).

The prior rule is checked table-driven: for each query state (no text, an empty text,
metadata only, a text on a log without text), every entry point (training's prior, the
calibration/evaluation replay prior, ``BudgetOracle.session``, ``PolicyOracle.session``,
``budget``, ``allocate`` and HTTP ``/v1/decide``) uses the same prior. The bundle is a
tiny real MaskablePPO trained, as ``allocator train`` does, on ``fit_prior``'s priors of a
log whose queries have no text (the case where ``session(None)`` once took 1 sample and
``session("x")`` 13.8).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import allocator
from allocator.actions import n_actions
from allocator.bundle import write_bundle
from allocator.defaults import LEGACY_MAX_POOL
from allocator.errors import BundleError, ParameterError
from allocator.executors import PolicyOracle
from allocator.featurizer import n_features
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog, QueryTable
from allocator.oracle import BudgetOracle
from allocator.policies import make_policy
from allocator.session import UNINFORMED_PRIOR, AttemptResult

TASK = "algebra"


# ------------------------------------------------------------------ fixtures
def with_queries(log: AttemptLog, text: str | None, task: str | None) -> AttemptLog:
    """``log`` with every query's text and task replaced (attempts unchanged)."""
    out = copy.copy(log)
    out.queries = QueryTable(text=np.full(log.n_queries, text, dtype=object),
                             metadata={"task": np.full(log.n_queries, task, dtype=object)})
    out.simulated = False
    return out


@dataclass
class Trained:
    log: AttemptLog
    test: np.ndarray
    prior: np.ndarray
    bundle: Path
    oracle: BudgetOracle
    max_pool: dict[str, int]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    pytest.importorskip("torch")
    from tiny_policy import LAMBDA_RANGE, train_tiny_policy

    from allocator.training.evaluation.evaluate import fit_prior, split_queries
    from allocator.training.rl.export import export_bundle

    folder = tmp_path_factory.mktemp("defaults")
    simulated = generate(SyntheticConfig(n_queries=120))
    log = copy.copy(simulated)  # no text; the task column kept; not flagged simulated
    log.queries = QueryTable(text=np.full(log.n_queries, None, dtype=object),
                             metadata={"task": simulated.queries.metadata["task"]})
    log.simulated = False
    train, test = split_queries(log.n_queries, 0.5, 0)
    predictor, prior = fit_prior(log, train, test, 0)
    model, venv = train_tiny_policy(log, prior, queries=train, steps=4096)
    bundle = export_bundle(model, folder / "bundle", arms=venv.pools.arms,
                           lambda_range=LAMBDA_RANGE, cost_unit=venv.settings.cost_unit,
                           log_fingerprint=log.fingerprint(),
                           predictor_dir=predictor.save(folder / "predictor"))
    largest = venv.pools.arm_count[train].max(axis=0)
    return Trained(log, test, prior, bundle, allocator.load(bundle),
                   dict(zip(venv.pools.arms, map(int, largest), strict=True)))


# ------------------------------------------------------------------ the prior rule
#: Query states: (text, metadata).
STATES = {
    "no text, no metadata": (None, None),
    "empty text": ("", None),
    "metadata only": (None, {"task": TASK}),
    "a text on a log without text": ("x", None),
}


@contextlib.contextmanager
def served(oracle: BudgetOracle) -> Iterator[Any]:
    """An httpx client of the oracle served by real uvicorn on loopback."""
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec(
            "uvicorn") is None:
        pytest.skip("the service extra is not installed")
    import httpx

    from allocator.service import BackgroundServer, create_app

    with BackgroundServer(create_app(oracle)) as server, httpx.Client(
            base_url=server.url) as http:
        yield http


def http_prior(oracle: BudgetOracle, text: str | None, metadata: dict | None) -> Any:
    body = {"query": text, "metadata": metadata, "lambda": 0.05}
    with served(oracle) as http:
        answer = http.post("/v1/decide", json={k: v for k, v in body.items()
                                               if v is not None})
    assert answer.status_code == 200, answer.text
    return [answer.json()["prior"][arm] for arm in oracle.arms]


def budgets(oracle: BudgetOracle, **kwargs: Any) -> list[dict[str, int]]:
    return [oracle.budget(lambda_=lam, **kwargs) for lam in (0.0, 0.01, 0.05, 0.2)]


#: Entry points: name -> (what it gives for a query state, what it gives for a prior).
ENTRY_POINTS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "BudgetOracle.session": (
        lambda o, t, m: o.session(t, metadata=m).prior.tolist(),
        lambda o, p: list(p)),
    "PolicyOracle.session": (
        lambda o, t, m: PolicyOracle(make_policy("fixed-n", n=3), o.arms, priors=o)
        .session(t, metadata=m).prior.tolist(),
        lambda o, p: list(p)),
    "BudgetOracle.budget": (
        lambda o, t, m: budgets(o, query=t, metadata=m),
        lambda o, p: budgets(o, prior=p)),
    "BudgetOracle.allocate": (
        lambda o, t, m: o.allocate([t] * 3, 40.0, metadata=[m] * 3),
        lambda o, p: o.allocate(3, 40.0, priors=np.tile(p, (3, 1)))),
    "HTTP /v1/decide": (http_prior, lambda o, p: list(p)),
}


def training_prior(trained: Trained, text: str | None, metadata: dict | None) -> np.ndarray:
    """The prior training and replay give a held-out log query in this state."""
    from allocator.training.rl.calibrate import bundle_log_prior

    log = with_queries(trained.log, text, (metadata or {}).get("task"))
    prior, source = bundle_log_prior(trained.bundle, log)
    assert source == "bundle difficulty predictor"
    return prior[trained.test[0]]


@pytest.mark.slow
@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_one_prior_rule_at_every_entry_point(trained: Trained, state: str,
                                             entry: str) -> None:
    text, metadata = STATES[state]
    expected = training_prior(trained, text, metadata)
    run, with_prior = ENTRY_POINTS[entry]
    got, want = run(trained.oracle, text, metadata), with_prior(trained.oracle, expected)
    if isinstance(want[0], dict):  # samples per arm: the same prior gives the same counts
        assert got == want
    else:
        assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.slow
def test_training_gave_held_out_queries_the_runtime_prior(trained: Trained) -> None:
    """``fit_prior`` (the pipeline's prior) on a held-out query without text equals what a
    session with the same metadata sees; without metadata, the manifest's prior."""
    oracle = trained.oracle
    for query in trained.test[:5]:
        task = trained.log.queries.metadata["task"][query]
        np.testing.assert_allclose(oracle.session(None, metadata={"task": task}).prior,
                                   trained.prior[query], rtol=0, atol=1e-12)
    manifest = oracle.bundle.manifest["default_prior"]
    assert [manifest["values"][arm] for arm in oracle.arms] == oracle.default_prior.tolist()
    assert "empty text" in oracle.prior_source
    # The defect this fixes: no text gave 0.5, any text the predictor's value.
    assert oracle.session(None).prior.tolist() == oracle.session("x").prior.tolist()
    assert oracle.budget(lambda_=0.01) == oracle.budget("x", lambda_=0.01)
    assert not np.allclose(oracle.default_prior, UNINFORMED_PRIOR)


@pytest.mark.slow
def test_an_explicit_prior_wins_everywhere(trained: Trained) -> None:
    oracle, prior = trained.oracle, [0.1, 0.9]
    assert oracle.session("x", prior=prior).prior.tolist() == prior
    assert PolicyOracle(make_policy("fixed-n", n=3), oracle.arms, priors=oracle).session(
        "x", prior=prior).prior.tolist() == prior
    with pytest.raises(ParameterError, match="priors"):
        PolicyOracle(make_policy("fixed-n", n=3), ("other", "arms"), priors=oracle)


# ------------------------------------------------------------------ the sample cap
@pytest.mark.slow
def test_export_records_the_largest_training_pool(trained: Trained) -> None:
    assert trained.oracle.max_pool == trained.max_pool
    assert trained.oracle.bundle.manifest["max_pool"] == trained.max_pool


@pytest.mark.slow
def test_a_session_at_the_lowest_price_stops_at_the_cap(trained: Trained) -> None:
    """Fed answers that never agree, at lambda 0, a session once asked for 500+ samples;
    now SAMPLE(arm) is masked at the arm's largest training pool, as in replay."""
    oracle = trained.oracle
    session = oracle.session(lambda_=0.0)
    for step in range(10_000):
        action = session.next_action()
        if action.kind == "stop":
            break
        session.observe(AttemptResult("sample", action.arm, f"answer {step}", 1.0))
    drawn = dict(zip(oracle.arms, session.state.samples.tolist(), strict=True))
    assert all(drawn[arm] <= trained.max_pool[arm] for arm in oracle.arms)
    assert session.state.drawn <= sum(trained.max_pool.values())


#: The scripted bundle's arms and a preference over [STOP, SAMPLE(a), SAMPLE(b), REFINE,
#: VERIFY]: it samples b, then a, and stops only when nothing else is allowed.
ARMS = ("a", "b")
PREFERENCE = np.array([0.0, 1.0, 2.0, 3.0, 4.0], dtype=np.float32)


def write_scripted(path: Path, **extra: object) -> Path:
    width, actions = n_features(len(ARMS)), n_actions(len(ARMS))
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": PREFERENCE}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    manifest = {"arms": list(ARMS), "lambda_range": [0.0, 0.4], "cost_unit": 1.0,
                "network": network, "normalization": None, "run_id": None,
                "log_fingerprint": "scripted", **extra}
    return write_bundle(path, weights=weights, manifest=manifest)


def drawn_until_stop(session: Any) -> dict[str, int]:
    while (action := session.next_action()).kind != "stop":
        session.observe(AttemptResult("sample", action.arm, "same", 1.0))
    return dict(zip(ARMS, session.state.samples.tolist(), strict=True))


CAP_CASES = [
    # (manifest max_pool, session arguments, samples drawn per arm until STOP)
    ({"a": 3, "b": 2}, {}, {"a": 3, "b": 2}),
    ({"a": 3, "b": 2}, {"max_samples_per_arm": {"b": 4}}, {"a": 3, "b": 4}),
    ({"a": 3, "b": 2}, {"max_samples": 9}, {"a": 0, "b": 9}),  # caps lifted, total 9
    ({"a": 3, "b": 2}, {"max_samples": 9, "max_samples_per_arm": {"b": 4}},
     {"a": 5, "b": 4}),
    ({"a": 0, "b": 1}, {}, {"a": 0, "b": 1}),  # an arm never sampled in training
    (None, {}, {"a": LEGACY_MAX_POOL, "b": LEGACY_MAX_POOL}),  # an older bundle
]


@pytest.mark.parametrize(("max_pool", "arguments", "expected"), CAP_CASES)
def test_the_cap_masks_sample_as_the_env_masks_an_exhausted_pool(
        tmp_path: Path, max_pool: dict | None, arguments: dict, expected: dict) -> None:
    extra = {} if max_pool is None else {"max_pool": max_pool}
    oracle = allocator.load(write_scripted(tmp_path / "bundle", **extra))
    assert drawn_until_stop(oracle.session(**arguments)) == expected
    if max_pool is None:
        assert "LEGACY_MAX_POOL" in oracle.max_pool_source


EXECUTOR_CASES = [
    # (session_factory arguments, samples drawn per arm until STOP)
    ({}, {"a": 3, "b": 2}),
    ({"max_samples": 6}, {"a": 0, "b": 6}),
    ({"max_samples_per_arm": {"a": 1}}, {"a": 1, "b": 2}),
]


@pytest.mark.parametrize(("arguments", "expected"), EXECUTOR_CASES)
def test_executors_pass_the_cap_through(tmp_path: Path, arguments: dict,
                                        expected: dict) -> None:
    from allocator.executors import session_factory
    from allocator.verifiers import Problem

    oracle = allocator.load(write_scripted(tmp_path / "bundle", max_pool={"a": 3, "b": 2}))
    factory = session_factory(oracle, **arguments)
    session = factory(Problem("q", "What is 2 + 2?"), arms=list(ARMS),
                      supports_refine=False, supports_verify=False)
    assert drawn_until_stop(session) == expected


def brute_force_budget(prior: list[float], costs: list[float], lam: float,
                       caps: list[int]) -> tuple[int, int]:
    """Every (arm, n) within the caps, scored by the two-answer majority model."""
    from allocator.allocation import majority_accuracy

    best = None
    for arm, (p, cost, cap) in enumerate(zip(prior, costs, caps, strict=True)):
        curve = majority_accuracy(np.array([p]), max(cap, 1))[0]
        for n in range(1, cap + 1):
            value = (curve[n] - lam * n * cost, -n * cost)
            if best is None or value > best[0]:
                best = (value, (arm, n))
    assert best is not None
    return best[1]


@pytest.mark.parametrize(("max_pool", "max_samples", "lam"), [
    ({"a": 3, "b": 2}, None, 0.0),     # the caps bind: before, 40 samples of an arm
    ({"a": 3, "b": 2}, None, 0.01),
    ({"a": 0, "b": 5}, None, 0.0),     # an arm never trained on is never budgeted
    ({"a": 3, "b": 2}, 7, 0.0),        # max_samples replaces the caps for every arm
])
def test_budget_and_allocate_follow_the_sessions_sample_caps(
        tmp_path: Path, max_pool: dict, max_samples: int | None, lam: float) -> None:
    oracle = allocator.load(write_scripted(tmp_path / "bundle", max_pool=max_pool))
    prior = [0.6, 0.7]
    caps = [max_samples or max_pool[arm] for arm in ARMS]
    counts = oracle.budget(prior=prior, lambda_=lam, max_samples=max_samples)
    arm, n = brute_force_budget(prior, [1.0, 1.0], lam, caps)
    assert counts == {name: n if i == arm else 0 for i, name in enumerate(ARMS)}
    rows = oracle.allocate(4, 1000.0, priors=np.array([prior] * 4), max_samples=max_samples)
    assert all(row[name] <= cap for row in rows for name, cap in zip(ARMS, caps, strict=True))
    uncapped = oracle.allocate(4, 1000.0, priors=np.array([prior] * 4), max_samples=40)
    assert max(n for row in uncapped for n in row.values()) > max(caps)  # the caps bound it


def test_budget_without_a_budgetable_arm_is_a_clear_error(tmp_path: Path) -> None:
    oracle = allocator.load(write_scripted(tmp_path / "bundle", max_pool={"a": 0, "b": 4}))
    with pytest.raises(ParameterError, match="sample cap"):
        oracle.budget(prior=[0.6, 0.7], arms=["a"])
    with pytest.raises(ParameterError, match="sample cap"):
        oracle.allocate(2, 10.0, arm="a")
    assert oracle.budget(prior=[0.6, 0.7], arms=["a"], max_samples=3,
                         lambda_=0.0) == {"a": 3, "b": 0}


# ------------------------------------------------------------------ lambda, target cost
TABLE = [[0.0, 12.0], [0.2, 6.0], [0.4, 2.0]]


def test_target_cost_outside_the_calibrated_range_is_refused(tmp_path: Path) -> None:
    oracle = allocator.load(write_scripted(
        tmp_path / "bundle", calibration={"table": TABLE, "target_mean_cost": 6.0},
        calibrated_lambda=0.2))
    assert oracle.calibrated_cost_range == (2.0, 12.0)
    assert oracle.session(target_cost=9.0).lambda_ == pytest.approx(0.1)
    assert oracle.session(target_cost=12.0).lambda_ == 0.0
    for outside in (1.99, 12.01, 100.0):
        with pytest.raises(ParameterError, match=r"calibrated range \[2, 12\]"):
            oracle.session(target_cost=outside)


# ------------------------------------------------------------------ the description
def test_defaults_say_what_and_where_from(tmp_path: Path) -> None:
    plain = allocator.load(write_scripted(tmp_path / "plain"))
    described = plain.defaults()
    assert described["lambda"]["value"] == 0.2 and "middle" in described["lambda"]["source"]
    assert described["prior"]["values"] == {"a": UNINFORMED_PRIOR, "b": UNINFORMED_PRIOR}
    assert "no difficulty predictor" in described["prior"]["source"]
    assert described["max_samples_per_arm"]["values"] == {"a": LEGACY_MAX_POOL,
                                                          "b": LEGACY_MAX_POOL}
    assert described["target_cost_range"] is None
    json.dumps(described, allow_nan=False)

    recorded = allocator.load(write_scripted(
        tmp_path / "recorded", max_pool={"a": 7, "b": 9},
        default_prior={"values": {"a": 0.3, "b": 0.6}, "source": "test"},
        calibration={"table": TABLE, "target_mean_cost": 6.0, "goal": "a goal"},
        calibrated_lambda=0.2))
    described = recorded.defaults()
    assert described["lambda"] == {"value": 0.2, "source": "calibration: a goal",
                                   "range": [0.0, 0.4]}
    assert described["prior"] == {"values": {"a": 0.3, "b": 0.6},
                                  "source": "manifest default_prior: test"}
    assert described["max_samples_per_arm"]["values"] == {"a": 7, "b": 9}
    assert described["target_cost_range"] == [2.0, 12.0]
    assert recorded.session().prior.tolist() == [0.3, 0.6]


BAD_FIELDS = [
    ("max_pool", {"a": 3}),
    ("max_pool", {"a": 3, "b": -1}),
    ("max_pool", {"a": 3, "b": 2.5}),
    ("default_prior", {"values": {"a": 0.3}, "source": "x"}),
    ("default_prior", {"values": {"a": 0.3, "b": 1.5}, "source": "x"}),
    ("default_prior", [0.3, 0.6]),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_a_bad_default_field_is_refused_by_name(tmp_path: Path, field: str,
                                                value: object) -> None:
    with pytest.raises(BundleError, match=field):
        allocator.load(write_scripted(tmp_path / "bundle", **{field: value}))


def test_inspect_prints_the_defaults(tmp_path: Path) -> None:
    from allocator.cli import app

    bundle = write_scripted(tmp_path / "bundle", max_pool={"a": 7, "b": 9})
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    inspected = json.loads(result.stdout)
    assert inspected["defaults"] == allocator.load(bundle).defaults()
    assert inspected["sha256"] == hashlib.sha256(
        (bundle / "manifest.json").read_bytes()).hexdigest()
    assert inspected["calibrated_from"] is None
    result = runner.invoke(app, ["inspect", str(bundle)])
    assert result.exit_code == 0, result.output
    for text in ("sample cap", "max_pool", "prior", "middle of the lambda range"):
        assert text in result.stdout
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "nope" in result.output


def test_health_returns_the_defaults(tmp_path: Path) -> None:
    oracle = allocator.load(write_scripted(tmp_path / "bundle", max_pool={"a": 7, "b": 9}))
    with served(oracle) as http:
        health = http.get("/v1/health").json()
    assert health["model"]["defaults"] == json.loads(json.dumps(oracle.defaults()))

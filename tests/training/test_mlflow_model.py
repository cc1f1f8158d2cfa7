"""The bundle as an MLflow pyfunc model (logged from code), registered under an alias.

A real (small) MaskablePPO is trained on a simulated log (about 2 s on one thread, the
recipe of ``tests/allocator/test_oracle.py``) and exported with its difficulty
predictor; :func:`allocator.training.tracking.log_bundle_model` logs it to a SQLite store under
tmp_path and registers it. ``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict``
must answer, for random states, the action a :class:`~allocator.session.Session` that
observed the same attempts one by one would take, and so must ``mlflow models serve -m
models:/NAME@ALIAS --env-manager local`` over HTTP (a real server in a subprocess; the
local env manager serves from this environment, where ``allocator`` is installed: the
logged model's requirements do not list the project itself).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import allocator
from allocator.session import AttemptResult
from allocator.training.tracking import log_bundle_model

#: The lambda range the tiny bundle trains over (tests/tiny_policy.py: LAMBDA_RANGE).
TINY_LAMBDA_RANGE = (0.0, 0.2)

ANSWERS = ("7", "12", "42", None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A bundle (policy and difficulty predictor) and the log's query texts."""
    pytest.importorskip("torch")
    from tiny_policy import export_tiny_bundle

    return export_tiny_bundle(tmp_path_factory.mktemp("pyfunc"))


def random_states(arms: tuple[str, ...], queries: list[str], n: int, seed: int = 0
                  ) -> list[dict]:
    """Random states: attempts (arm, answer, cost) in order, lambda, query or prior."""
    rng = np.random.default_rng(seed)
    states = []
    for i in range(n):
        attempts = [(str(rng.choice(arms)), ANSWERS[int(rng.integers(len(ANSWERS)))],
                     float(rng.uniform(50, 400))) for _ in range(int(rng.integers(0, 9)))]
        state = {"attempts": attempts, "lambda": float(rng.uniform(*TINY_LAMBDA_RANGE))}
        if i % 2:
            state["query"] = queries[i % len(queries)]
        else:
            state["prior"] = rng.uniform(0.05, 0.95, len(arms)).round(3).tolist()
        states.append(state)
    return states


def request(state: dict, arms: tuple[str, ...], as_json: bool) -> dict:
    """The pyfunc request of a state (counts only), mappings as JSON text or dicts."""
    samples = {arm: sum(a == arm for a, _, _ in state["attempts"]) for arm in arms}
    votes: dict[str, int] = {}
    for _, answer, _ in state["attempts"]:
        if answer is not None:
            votes[answer] = votes.get(answer, 0) + 1
    encode = json.dumps if as_json else (lambda value: value)
    return {"query": state.get("query"), "lambda": state["lambda"],
            "prior": None if "prior" not in state else encode(state["prior"]),
            "samples": encode(samples), "votes": encode(votes),
            "cost_spent": sum(cost for _, _, cost in state["attempts"])}


def direct_action(oracle: allocator.oracle.BudgetOracle, state: dict) -> tuple[str, str | None]:
    session = oracle.session(state.get("query"), lambda_=state["lambda"],
                             prior=state.get("prior"))
    for arm, answer, cost in state["attempts"]:
        session.observe(AttemptResult("sample", arm, answer, cost))
    action = session.next_action()
    return action.kind, action.arm


@pytest.mark.slow
def test_registered_pyfunc_decides_as_a_session(trained: tuple[Path, list[str]],
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, queries = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) lands here
    import mlflow.pyfunc
    from mlflow import MlflowClient

    model_uri = log_bundle_model(bundle, tracking_uri=uri, registered_name="ttc-pyfunc",
                                 alias="champion")
    assert model_uri == "models:/ttc-pyfunc@champion"
    client = MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias("ttc-pyfunc", "champion")
    assert int(version.version) == 1 and version.run_id
    assert version.source.startswith("models:/m-")  # a logged model, not a run folder
    assert client.get_run(version.run_id).info.status == "FINISHED"

    # From code, not pickled: the MLmodel names the code file, the model holds no pickle.
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "m")))
    flavor = mlflow.models.Model.load(str(local)).flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert (local / "mlflow_model.py").is_file()
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]

    # allocator.load still finds the bundle in the registered version's artifacts.
    oracle = allocator.load(model_uri, tracking_uri=uri, dst_path=tmp_path / "bundle-copy")
    direct = allocator.load(bundle)
    assert oracle.arms == direct.arms
    assert oracle.bundle.manifest == direct.bundle.manifest

    states = random_states(direct.arms, queries, 60)
    expected = [direct_action(direct, state) for state in states]
    assert len(set(expected)) >= 2, expected  # the states lead to different decisions

    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.DataFrame([request(state, direct.arms, as_json=i % 3 == 0)
                          for i, state in enumerate(states)])
    answered = model.predict(frame)
    assert list(answered.columns[:2]) == ["kind", "arm"]
    got = list(zip(answered["kind"], answered["arm"], strict=True))
    assert got == expected  # arm is None (JSON null), not NaN, for non-sample actions

    # A list of dicts, each value in a 0-d array (what `mlflow models serve` makes of an
    # {"inputs": [...]} body), answers the same.
    records = [{key: np.array(value, dtype=object) for key, value in
                request(state, direct.arms, as_json=False).items()} for state in states[:10]]
    listed = model.predict(records)
    assert list(zip(listed["kind"], listed["arm"], strict=True)) == expected[:10]


def test_log_bundle_model_refuses_an_alias_without_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="registered_name"):
        log_bundle_model(tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'x.db'}",
                         alias="champion")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_ping(url: str, server: subprocess.Popen, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited early:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise AssertionError(f"mlflow models serve did not answer /ping within {limit_s} s")


@pytest.mark.slow
def test_mlflow_models_serve_answers_decisions(trained: tuple[Path, list[str]],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, queries = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    model_uri = log_bundle_model(bundle, tracking_uri=uri, registered_name="ttc-served",
                                 alias="prod")
    direct = allocator.load(bundle)
    states = random_states(direct.arms, queries, 30, seed=1)
    expected = [direct_action(direct, state) for state in states]
    assert len(set(expected)) >= 2, expected

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # mlflow and uvicorn of this environment
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
           "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    server = subprocess.Popen(
        [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url, server)
        body = json.dumps({"dataframe_records": [request(state, direct.arms, as_json=False)
                                                 for state in states]}).encode()
        call = urllib.request.Request(f"{url}/invocations", data=body, method="POST",
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(call, timeout=60) as response:
            answered = json.loads(response.read())["predictions"]
        bad = urllib.request.Request(  # a clear 400 naming the field, no stack trace
            f"{url}/invocations", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"dataframe_records": [{"samples": 0}]}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=60)
        assert refused.value.code == 400
        error = json.loads(refused.value.read())
        assert "field 'samples'" in error["message"] and "stack_trace" not in error
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    got = [(row["kind"], row["arm"]) for row in answered]
    assert got == expected


# ------------------------------------------------------------------ invalid requests
def scripted_bundle(path: Path) -> Path:
    """A hand-made bundle over the arms a and b, lambda in [0, 0.4] (no training)."""
    from allocator.actions import n_actions
    from allocator.bundle import write_bundle
    from allocator.featurizer import n_features

    width, actions = n_features(2), n_actions(2)
    weights = {"action_net.weight": np.zeros((actions, width), np.float32),
               "action_net.bias": np.arange(actions, dtype=np.float32)}
    network = {"kind": "mlp", "layers": [{"weight": "action_net.weight",
                                          "bias": "action_net.bias",
                                          "shape": [actions, width], "activation": None}]}
    return write_bundle(path, weights=weights, manifest={
        "arms": ["a", "b"], "lambda_range": [0.0, 0.4], "cost_unit": 2.0, "network": network,
        "normalization": None, "run_id": None, "log_fingerprint": "scripted"})


#: (request, the field its refusal must name) (issue 14, item 19: `samples: 0` and
#: other wrong values gave a stack trace)
BAD_REQUESTS = [
    ({"samples": 0}, "samples"),
    ({"samples": 5}, "samples"),
    ({"samples": "not json"}, "samples"),
    ({"samples": {"z": 1}}, "samples"),
    ({"samples": {"a": -1}}, "samples"),
    ({"samples": {"a": 1.5}}, "samples"),
    ({"samples": {"a": 1}, "votes": {"7": 2}}, "votes"),
    ({"votes": [1, 2]}, "votes"),
    ({"refines": -1}, "refines"),
    ({"refines": "two"}, "refines"),
    ({"lambda": "high"}, "lambda"),
    ({"lambda": 5.0}, "lambda"),
    ({"prior": [2.0, 0.5]}, "prior"),
    ({"prior": {"a": 0.5}}, "prior"),
    ({"prior": "x"}, "prior"),
    ({"max_samples": -3}, "max_samples"),
    ({"cost_spent": -1.0, "samples": {"a": 1}}, "cost_spent"),
    ({"cost_spent": 3.0}, "cost_spent"),
    ({"lamda": 0.1}, "lamda"),
]


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory: pytest.TempPathFactory):
    """The pyfunc model class itself, loaded on a scripted bundle as MLflow loads it."""
    import mlflow.pyfunc

    from allocator.mlflow_model import AllocatorModel

    bundle = scripted_bundle(tmp_path_factory.mktemp("pyfunc-scripted") / "bundle")
    model = AllocatorModel()
    model.load_context(mlflow.pyfunc.PythonModelContext(artifacts={"bundle": str(bundle)},
                                                        model_config={}))
    return model


@pytest.mark.parametrize(("row", "field"), BAD_REQUESTS, ids=[str(r) for r, _ in BAD_REQUESTS])
def test_an_invalid_request_is_refused_naming_its_field(scripted_model, row: dict,
                                                        field: str) -> None:
    from mlflow.exceptions import MlflowException

    good = {"samples": {"a": 1}, "votes": {"7": 1}, "lambda": 0.1}
    with pytest.raises(MlflowException) as caught:
        scripted_model.predict(None, [good, row])
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.get_http_status_code() == 400
    assert f"request 1: field {field!r}" in caught.value.message, caught.value.message
    answered = scripted_model.predict(None, [good])  # the valid request alone answers
    assert list(answered["kind"]) == ["sample"] or list(answered["kind"]) == ["stop"]

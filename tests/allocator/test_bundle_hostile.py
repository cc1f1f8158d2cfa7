"""Hostile bundles (issue 14, items 2 to 4): files rewritten *with their hashes updated*
(as a careless exporter or an attacker with write access would), so that only the checks
of their content stand between them and the runtime. Each is refused at load with a
:class:`BundleError` naming the file or field; the writer refuses the same values; a
served bundle is never replaced by one of them (``tests/allocator/service``)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

import allocator
from allocator.actions import n_actions
from allocator.bundle import MANIFEST_FILE, PREDICTOR_DIR, WEIGHTS_FILE, read_bundle, write_bundle
from allocator.errors import BundleError, ParameterError
from allocator.featurizer import n_features
from allocator.lgbm_text import checked_model_text
from allocator.logs.synthetic import SyntheticConfig, generate

ARMS = ("large", "small")
MODEL = f"{PREDICTOR_DIR}/difficulty.lgb.txt"
CONFIG = f"{PREDICTOR_DIR}/difficulty.json"
QUERIES = ["What is 6 * 7?", "Name the capital of France.", "Integrate x^2 from 0 to 1."]


# ------------------------------------------------------------------ a bundle with a predictor
def network(width: int, actions: int) -> dict:
    return {"kind": "mlp", "layers": [{"weight": "action_net.weight", "bias": "action_net.bias",
                                       "shape": [actions, width], "activation": None}]}


def good_manifest(**changes: object) -> dict:
    width, actions = n_features(len(ARMS)), n_actions(len(ARMS))
    manifest = {"arms": list(ARMS), "lambda_range": [0.0, 0.4], "cost_unit": 2.0,
                "network": network(width, actions),
                "normalization": {"mean": [0.0] * width, "var": [1.0] * width,
                                  "epsilon": 1e-8, "clip": 10.0},
                "run_id": None, "log_fingerprint": "hostile"}
    manifest.update(changes)
    return manifest


def good_weights() -> dict[str, np.ndarray]:
    width, actions = n_features(len(ARMS)), n_actions(len(ARMS))
    rng = np.random.default_rng(0)
    return {"action_net.weight": rng.normal(0, 0.1, (actions, width)).astype(np.float32),
            "action_net.bias": np.arange(actions, dtype=np.float32)}


@pytest.fixture(scope="module")
def predictor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from allocator.training.difficulty import SIMULATED_TRUTH, DifficultyPredictor

    log = generate(SyntheticConfig(n_queries=80))
    predictor = DifficultyPredictor(n_estimators=10, exclude_metadata=SIMULATED_TRUTH,
                                    text_features=True, text_components=8, random_state=0,
                                    num_threads=1)
    with warnings.catch_warnings():  # text features on a simulated log: a leakage warning
        warnings.simplefilter("ignore", UserWarning)
        predictor.fit(log)
    return predictor.save(tmp_path_factory.mktemp("predictor"))


@pytest.fixture
def bundle(tmp_path: Path, predictor_dir: Path) -> Path:
    return write_bundle(tmp_path / "bundle", weights=good_weights(), manifest=good_manifest(),
                        predictor_dir=predictor_dir)


def rehash(path: Path, name: str) -> None:
    """Record the file's new sha256 in the manifest (the tampering leaves no trace)."""
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def edit_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))  # allows NaN and Infinity


def edit_normalization(path: Path, **changes: object) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    edit_manifest(path, normalization={**manifest["normalization"], **changes})


def edit_weights(path: Path, value: float) -> None:
    weights = load_safetensors((path / WEIGHTS_FILE).read_bytes())
    weights["action_net.bias"][1] = value
    (path / WEIGHTS_FILE).write_bytes(save_safetensors(weights))
    rehash(path, WEIGHTS_FILE)


def edit_model(path: Path, change: Callable[[str], str]) -> None:
    file = path / MODEL
    file.write_text(change(file.read_text()))
    rehash(path, MODEL)


def edit_config(path: Path, **files: object) -> None:
    file = path / CONFIG
    config = json.loads(file.read_text())
    config["files"].update(files)
    file.write_text(json.dumps(config))
    rehash(path, CONFIG)


def first(key: str, value: str) -> Callable[[str], str]:
    """Set the first entry of the first ``key=`` line of the model text."""
    def change(text: str) -> str:
        return re.sub(rf"^{key}=\S+", f"{key}={value}", text, count=1, flags=re.M)
    return change


# ------------------------------------------------------------------ item 4: values
VALUES = {
    "reversed lambda_range": (lambda p: edit_manifest(p, lambda_range=[0.4, 0.0]),
                              "lambda_range"),
    "NaN lambda_range": (lambda p: edit_manifest(p, lambda_range=[0.0, float("nan")]),
                         "lambda_range"),
    "negative lambda_range": (lambda p: edit_manifest(p, lambda_range=[-1.0, 0.4]),
                              "lambda_range"),
    "cost_unit 0": (lambda p: edit_manifest(p, cost_unit=0), "cost_unit"),
    "infinite cost_unit": (lambda p: edit_manifest(p, cost_unit=float("inf")), "cost_unit"),
    "cost_unit true": (lambda p: edit_manifest(p, cost_unit=True), "cost_unit"),
    "zero variance and epsilon": (lambda p: edit_normalization(p, var=[0.0] * n_features(2),
                                                               epsilon=0.0), "normalization"),
    "infinite clip": (lambda p: edit_normalization(p, clip=float("inf")), "normalization"),
    "NaN epsilon": (lambda p: edit_normalization(p, epsilon=float("nan")), "normalization"),
    "infinite variance": (lambda p: edit_normalization(p, var=[float("inf")] * n_features(2)),
                          "normalization"),
    "NaN weight": (lambda p: edit_weights(p, float("nan")), "action_net.bias"),
    "infinite weight": (lambda p: edit_weights(p, float("inf")), "action_net.bias"),
}


@pytest.mark.parametrize("case", sorted(VALUES))
def test_values_the_writer_refuses_are_refused_on_read(bundle: Path, case: str) -> None:
    tamper, field = VALUES[case]
    assert read_bundle(bundle).arms == ARMS
    tamper(bundle)
    with pytest.raises(BundleError, match=re.escape(field)) as error:
        allocator.load(bundle)
    assert "re-export" in str(error.value) and str(bundle) in str(error.value)


WRITER_VALUES = {
    "reversed lambda_range": ({"lambda_range": [0.4, 0.0]}, None, "lambda_range"),
    "cost_unit 0": ({"cost_unit": 0}, None, "cost_unit"),
    "zero variance and epsilon": ({"normalization": {"mean": [0.0] * n_features(2),
                                                     "var": [0.0] * n_features(2),
                                                     "epsilon": 0.0, "clip": 5.0}},
                                  None, "normalization"),
    "infinite clip": ({"normalization": {"mean": [0.0] * n_features(2),
                                         "var": [1.0] * n_features(2), "epsilon": 1e-8,
                                         "clip": float("inf")}}, None, "normalization"),
    "NaN weight": ({}, float("nan"), "action_net.bias"),
}


@pytest.mark.parametrize("case", sorted(WRITER_VALUES))
def test_the_writer_refuses_the_same_values(tmp_path: Path, case: str) -> None:
    changes, bias, field = WRITER_VALUES[case]
    weights = good_weights()
    if bias is not None:
        weights["action_net.bias"][1] = bias
    with pytest.raises(ParameterError, match=re.escape(field)):
        write_bundle(tmp_path / "b", weights=weights, manifest=good_manifest(**changes))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ items 2 and 3: predictor
PREDICTOR = {
    "truncated model": (lambda p: edit_model(p, lambda t: t[: t.index("end of trees")]),
                        "tree 9 (line 201): its text is not the"),
    "truncated between trees": (lambda p: edit_model(p, lambda t: t[: t.index("Tree=4")]),
                                "tree 3 (line 75): its text is not the"),
    "trees missing": (lambda p: edit_model(p, lambda t: t[: t.index("Tree=4")]
                                           + t[t.index("end of trees"):]),
                      "line 96: expected 'Tree=4' (the header lists 10 trees)"),
    "end of trees missing": (lambda p: edit_model(p, lambda t: t[: t.index("end of trees")]
                                                  + "feature_importances:\n"),
                             "expected 'end of trees' after 10 trees"),
    "truncated in a tree": (lambda p: edit_model(p, lambda t: t[: t.index("leaf_value") + 30]),
                            "lacks ['cat_boundaries', 'cat_threshold', 'internal_count'"),
    "child index out of range": (lambda p: edit_model(p, first("left_child", "500")),
                                 "child 500"),
    "leaf index out of range": (lambda p: edit_model(p, first("left_child", "-500")),
                                "leaf 499"),
    "split feature out of range": (lambda p: edit_model(p, first("split_feature", "99999")),
                                   "split feature"),
    "num_leaves off the arrays": (lambda p: edit_model(p, first("num_leaves", "400")),
                                  "leaf_value must hold 400 finite numbers"),
    "NaN leaf value": (lambda p: edit_model(p, first("leaf_value", "nan")), "leaf_value"),
    "node reached twice": (lambda p: edit_model(p, first("right_child", "0")), "child 0"),
    "huge max_feature_idx": (lambda p: edit_model(p, first("max_feature_idx", "99999999")),
                             "max_feature_idx"),
    "not a model": (lambda p: edit_model(p, lambda t: "hello\n"), "not 'tree'"),
    "model named /etc/passwd": (lambda p: edit_config(p, model="/etc/passwd"), "/etc/passwd"),
    "model named ../../x.lgb.txt": (lambda p: edit_config(p, model="../../x.lgb.txt"),
                                    "never a path"),
    "basis outside the bundle": (lambda p: edit_config(p, text_basis="../policy.safetensors"),
                                 "never a path"),
    "model not among the files": (lambda p: edit_config(p, model="other.lgb.txt"),
                                  "other.lgb.txt"),
    "manifest lists a path": (lambda p: edit_manifest(p, difficulty={
        "dir": PREDICTOR_DIR, "files": ["difficulty.json", "../policy.safetensors"]}),
        "plain file names"),
}


@pytest.mark.parametrize("case", sorted(PREDICTOR))
def test_a_malformed_predictor_is_refused_before_lightgbm_reads_it(bundle: Path,
                                                                   case: str) -> None:
    tamper, message = PREDICTOR[case]
    tamper(bundle)
    with pytest.raises(BundleError, match=re.escape(message)) as error:
        allocator.load(bundle)
    assert "re-export" in str(error.value)


def test_a_huge_num_threads_is_dropped_and_predictions_kept(bundle: Path) -> None:
    before = allocator.load(bundle).predict_priors(QUERIES)
    edit_model(bundle, lambda t: t.replace("[num_threads: 1]", "[num_threads: 100000000]"))
    config = json.loads((bundle / CONFIG).read_text())
    config["params"]["num_threads"] = 100_000_000
    (bundle / CONFIG).write_text(json.dumps(config))
    rehash(bundle, CONFIG)
    oracle = allocator.load(bundle)
    model = oracle.bundle.predictor_files["difficulty.lgb.txt"].decode()
    assert "num_threads" not in model and model.endswith("end of trees\n")
    np.testing.assert_array_equal(oracle.predict_priors(QUERIES), before)
    # the serving model always predicts on one thread; the estimator rebuilt from the
    # same files does not trust the saved thread count either
    from allocator.training.difficulty import DifficultyPredictor

    rebuilt = DifficultyPredictor.from_files(oracle.bundle.predictor_files, source="bundle")
    assert rebuilt.num_threads == 1


@pytest.mark.parametrize("damage", ["truncate", "replace"])
def test_predictor_files_changed_after_load_are_never_read(bundle: Path, damage: str) -> None:
    oracle = allocator.load(bundle)  # the predictor is not built yet: on first use
    expected = allocator.load(bundle).predict_priors(QUERIES)
    for name in ("difficulty.lgb.txt", "difficulty.json", "difficulty.text.npy"):
        file = bundle / PREDICTOR_DIR / name
        file.write_bytes(b"" if damage == "truncate" else file.read_bytes()[::-1])
    np.testing.assert_array_equal(oracle.predict_priors(QUERIES), expected)


def test_the_checked_model_predicts_exactly_as_the_saved_one(predictor_dir: Path) -> None:
    import lightgbm as lgb

    data = (predictor_dir / "difficulty.lgb.txt").read_bytes()
    config = json.loads((predictor_dir / "difficulty.json").read_text())
    width = len(config["feature_names"])
    x = np.random.default_rng(1).normal(size=(64, width))
    x[:, -1] = np.arange(64) % 2  # the arm column (categorical)
    original = lgb.Booster(model_str=data.decode()).predict(x, num_threads=1)
    checked = lgb.Booster(model_str=checked_model_text(data, width)).predict(x, num_threads=1)
    np.testing.assert_array_equal(checked, original)


# ------------------------------------------------------------------ the service keeps serving
SERVED_CASES = ["child index out of range", "truncated in a tree", "model named /etc/passwd"]


@pytest.mark.parametrize("case", [*SERVED_CASES, "cost_unit 0", "NaN weight"])
def test_a_service_never_swaps_in_a_hostile_bundle(bundle: Path, case: str) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from allocator.service import BackgroundServer, create_app

    tamper = PREDICTOR[case][0] if case in PREDICTOR else VALUES[case][0]
    body = {"query": QUERIES[0]}  # the prior comes from the bundled predictor
    with BackgroundServer(create_app(bundle)) as server, httpx.Client(
            base_url=server.url, timeout=30) as http:
        served = http.get("/v1/health").json()["model"]["bundle_id"]
        before = http.post("/v1/decide", json=body).json()
        tamper(bundle)
        answer = http.post("/v1/admin/reload", json={"force": True})
        assert answer.status_code == 502 and answer.json()["error"] == "reload_failed"
        health = http.get("/v1/health").json()
        assert health["model"]["bundle_id"] == served and health["reload"]["last_error"]
        assert http.post("/v1/decide", json=body).json() == before
    with pytest.raises(BundleError):
        create_app(bundle)  # and a server never starts on it


# ------------------------------------------------------------------ fuzzing the model check
def mutate(text: str, rng: np.random.Generator) -> str:
    """One random edit: a truncation, a line deleted or repeated, a number replaced, an
    entry dropped or two swapped; then ``tree_sizes`` made consistent again (as a careful
    attacker would, so that the deeper checks are reached)."""
    lines = text.split("\n")
    j = int(rng.integers(0, len(lines)))
    kind = int(rng.integers(0, 6))
    words = lines[j].split(" ")
    if kind == 0:
        return _fix_sizes(text[: int(rng.integers(0, len(text)))])
    if kind == 1:
        del lines[j]
    elif kind == 2:
        lines.insert(j, lines[j])
    elif kind == 3:
        numbers = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", lines[j]))
        if numbers:
            found = numbers[int(rng.integers(0, len(numbers)))]
            value = str(rng.choice(["0", "-1", "1", "2", "3", "69", "70", "255", "-32",
                                    "1000000000", "-1000000000", "nan", "inf", "4294967296"]))
            lines[j] = lines[j][: found.start()] + value + lines[j][found.end():]
    elif kind == 4 and len(words) > 1:
        del words[int(rng.integers(0, len(words)))]
        lines[j] = " ".join(words)
    elif len(words) > 2:
        a, b = rng.integers(0, len(words), 2)
        words[a], words[b] = words[b], words[a]
        lines[j] = " ".join(words)
    return _fix_sizes("\n".join(lines))


def _fix_sizes(text: str) -> str:
    starts = [m.start() for m in re.finditer(r"^Tree=\d+$", text, re.M)]
    if "end of trees" not in text or not starts:
        return text
    bounds = [*starts, text.index("end of trees")]
    sizes = " ".join(str(b - a) for a, b in itertools.pairwise(bounds))
    return re.sub(r"^tree_sizes=.*$", f"tree_sizes={sizes}", text, count=1, flags=re.M)


def categorical_model() -> tuple[str, int]:
    """A small LightGBM model with categorical splits (category sets), and its width."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    x[:, 2] = rng.integers(0, 8, 400)
    y = np.isin(x[:, 2], [1, 3, 6]).astype(float)
    booster = lgb.train({"objective": "cross_entropy", "verbose": -1, "num_leaves": 4,
                         "num_threads": 1, "max_cat_to_onehot": 2, "min_data_per_group": 5,
                         "cat_smooth": 1}, lgb.Dataset(x, y, categorical_feature=[2]),
                        num_boost_round=3)
    text = booster.model_to_string()
    assert "num_cat=1" in text
    return text, 3


@pytest.mark.slow
def test_no_edit_of_a_model_that_passes_the_check_crashes_lightgbm(predictor_dir: Path,
                                                                    tmp_path: Path) -> None:
    """Thousands of random edits: each is refused (ValueError), or LightGBM loads and
    predicts with it without aborting the process (checked in a child process)."""
    import subprocess
    import sys

    config = json.loads((predictor_dir / "difficulty.json").read_text())
    models = [((predictor_dir / "difficulty.lgb.txt").read_text(),
               len(config["feature_names"])), categorical_model()]
    rng = np.random.default_rng(2026)
    accepted, refused = [], 0
    for text, width in models:
        for _ in range(1500):
            try:
                accepted.append((checked_model_text(mutate(text, rng).encode(), width), width))
            except ValueError:
                refused += 1
    assert refused > 500 and len(accepted) > 500  # both outcomes are exercised
    cases = tmp_path / "accepted.json"
    cases.write_text(json.dumps(accepted))
    script = (
        "import json, sys, numpy as np, lightgbm as lgb\n"
        "for text, width in json.load(open(sys.argv[1])):\n"
        "    x = np.random.default_rng(0).normal(size=(64, width)) * 3\n"
        "    x[:, -1] = np.arange(64) % 4\n"
        "    try:\n"
        "        lgb.Booster(model_str=text).predict(x, num_threads=1)\n"
        "    except lgb.basic.LightGBMError:\n"
        "        pass\n"
        "print('survived')\n")
    run = subprocess.run([sys.executable, "-c", script, str(cases)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "survived" in run.stdout, run.stderr[-2000:]


def edit_settings(path: Path, **changes: object) -> None:
    file = path / CONFIG
    config = json.loads(file.read_text())
    config.update(changes)
    file.write_text(json.dumps(config))
    rehash(path, CONFIG)


SETTINGS = {
    "features missing": {"features": None},
    "unknown parameter": {"params": {"colour": "red"}},
    "calibrator malformed": {"calibrator": {"kind": "isotonic"}},
    "arms not a list": {"arms": 3},
}


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_malformed_predictor_settings_are_a_bundle_error(bundle: Path, case: str) -> None:
    edit_settings(bundle, **SETTINGS[case])
    oracle = allocator.load(bundle)  # the predictor is built on first use...
    with pytest.raises(BundleError, match="difficulty predictor cannot be loaded"):
        oracle.predict_priors(QUERIES)  # ... with a clear error, not a KeyError

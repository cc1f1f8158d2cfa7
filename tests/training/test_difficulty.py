"""The difficulty predictor: sklearn contract, quality without leaks, cross-fitting,
calibration, exact pickle-free persistence, and a real log.

Simulated logs hold the true difficulty in their metadata (``difficulty``, ``component``)
and in their query text ("Simulated query 17 (difficulty 0.42)"). Quality tests therefore
exclude those columns and the text (``TRUTH_FREE``) and give the predictor an honest
signal instead: a user feature that is the difficulty plus noise, or a text of words
drawn from a "hard" vocabulary with probability equal to the difficulty.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from allocator.converters import convert
from allocator.errors import AllocatorError, ParameterError
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.logs.table import AttemptLog, QueryTable
from allocator.training.difficulty import (
    CONFIG_FILE,
    MODEL_FILE,
    SIMULATED_TRUTH,
    TEXT_BASIS_FILE,
    DifficultyPredictor,
    cross_fit_predict,
)
from allocator.training.difficulty_metrics import evaluate_difficulty

TRUTH_FREE = {"exclude_metadata": SIMULATED_TRUTH, "text_features": False}
#: One LightGBM thread in tests: on a busy 2-core runner two OpenMP threads made the
#: fits 3 to 10 times slower (spin-waiting against other processes).
THREADS = {"num_threads": 1}
#: Settings under which the booster memorises a unique id per query.
MEMORISE = {"n_estimators": 300, "learning_rate": 0.1, "num_leaves": 63,
            "min_child_samples": 1, "max_bin": 4096}


@pytest.fixture(scope="module")
def synthetic() -> tuple[AttemptLog, np.ndarray, np.ndarray, np.ndarray]:
    """A simulated log (2 arms, 1,000 queries), a noisy difficulty hint, train/test split."""
    log = generate(SyntheticConfig(n_queries=1000), seed=3)
    rng = np.random.default_rng(3)
    hint = log.queries.metadata["difficulty"] + rng.normal(0.0, 0.1, log.n_queries)
    order = rng.permutation(log.n_queries)
    return log, hint[:, None], np.sort(order[:700]), np.sort(order[700:])


def predictor(**params: object) -> DifficultyPredictor:
    """A predictor with the tests' thread setting."""
    return DifficultyPredictor(**{**THREADS, **params})


def with_queries(log: AttemptLog, text: np.ndarray | None = None, **metadata: np.ndarray
                 ) -> AttemptLog:
    """A copy of ``log`` with replaced query text and/or added metadata columns."""
    copy = log.select_queries(np.arange(log.n_queries))
    copy.queries = QueryTable(
        text=log.queries.text if text is None else text,
        metadata={**log.queries.metadata, **metadata},
    )
    return copy


def per_arm_spearman(predictions: np.ndarray, log: AttemptLog, queries: np.ndarray
                     ) -> list[float]:
    report = evaluate_difficulty(predictions, log, queries)
    return [report["per_arm"][arm]["spearman"] for arm in log.arms]


# ------------------------------------------------------------------ contract
def test_get_params_set_params_and_clone() -> None:
    model = predictor(n_estimators=7, calibration="sigmoid", exclude_metadata=("x",))
    params = model.get_params()
    assert params["n_estimators"] == 7 and params["calibration"] == "sigmoid"
    assert params["exclude_metadata"] == ("x",)
    twin = clone(model)
    assert twin is not model and twin.get_params() == params
    assert model.set_params(num_leaves=5) is model and model.num_leaves == 5
    assert "n_estimators=7" in repr(model)


def test_constructor_stores_arguments_only_and_fit_validates() -> None:
    model = predictor(n_estimators=-3)  # accepted here, refused by fit
    assert not [name for name in vars(model) if name.endswith("_")]
    with pytest.raises(ParameterError) as error:
        model.fit(generate(SyntheticConfig(n_queries=20), seed=0))
    assert error.value.parameter == "n_estimators"


def test_predict_and_save_before_fit_raise_not_fitted(tmp_path: Path) -> None:
    log = generate(SyntheticConfig(n_queries=10), seed=0)
    with pytest.raises(NotFittedError):
        DifficultyPredictor().predict(log)
    with pytest.raises(NotFittedError):
        DifficultyPredictor().save(tmp_path)


def test_fit_returns_self_sets_attributes_and_is_deterministic(synthetic) -> None:
    log, hint, train, test = synthetic
    model = predictor(n_estimators=50, **TRUTH_FREE)
    assert model.fit(log, train, features=hint) is model
    assert model.arms_ == log.arms
    assert model.feature_names_[0] == "arm" and "user:0" in model.feature_names_
    assert "meta:task" in model.feature_names_
    assert not [n for n in model.feature_names_ if "difficulty" in n or "component" in n]
    predictions = model.predict(log, test, features=hint)
    assert predictions.shape == (len(test), len(log.arms))
    assert np.all((predictions >= 0) & (predictions <= 1))
    again = predictor(n_estimators=50, **TRUTH_FREE).fit(log, train, features=hint)
    assert np.array_equal(again.predict(log, test, features=hint), predictions)
    other_seed = predictor(n_estimators=50, random_state=1, **TRUTH_FREE)
    assert not np.array_equal(
        other_seed.fit(log, train, features=hint).predict(log, test, features=hint),
        predictions)


@pytest.mark.parametrize(("parameter", "value"), [
    ("n_estimators", 0),
    ("learning_rate", -0.1),
    ("num_leaves", 1),
    ("min_child_samples", 0),
    ("max_bin", 1),
    ("feature_fraction", 0.0),
    ("calibration", "platt"),
    ("calibration_splits", 1),
    ("text_features", "yes"),
    ("text_components", 0),
    ("metadata_columns", ("no-such-column",)),
    ("exclude_metadata", "difficulty"),
    ("max_categories", 0),
    ("num_threads", 0),
    ("random_state", -1),
    ("random_state", 1.5),
])
def test_invalid_parameters_are_named(parameter: str, value: object) -> None:
    log = generate(SyntheticConfig(n_queries=30), seed=0)
    with pytest.raises(ParameterError) as error:
        predictor(**{parameter: value}).fit(log)
    assert error.value.parameter == parameter
    assert "DifficultyPredictor" in str(error.value)


@pytest.mark.parametrize("queries", [[0, 0, 1], [0, 999], [0.5, 1.0], []])
def test_invalid_queries_are_named(queries: list) -> None:
    log = generate(SyntheticConfig(n_queries=30), seed=0)
    with pytest.raises(ParameterError) as error:
        predictor(**TRUTH_FREE).fit(log, np.array(queries))
    assert error.value.parameter == "queries"


def test_mismatched_inputs_at_predict_time_are_named(synthetic) -> None:
    log, hint, train, test = synthetic
    model = predictor(n_estimators=10, **TRUTH_FREE).fit(log, train, features=hint)
    with pytest.raises(ParameterError, match="features") as error:
        model.predict(log, test)
    assert error.value.parameter == "features"
    with pytest.raises(ParameterError) as error:
        model.predict(log, test, features=np.hstack([hint, hint]))
    assert error.value.parameter == "features"
    without_task = with_queries(log)
    del without_task.queries.metadata["task"]
    with pytest.raises(ParameterError, match="task") as error:
        model.predict(without_task, test, features=hint)
    assert error.value.parameter == "log"
    with pytest.raises(ParameterError) as error:
        cross_fit_predict(model, log, train, n_splits=1, features=hint)
    assert error.value.parameter == "n_splits"
    with pytest.raises(ParameterError) as error:
        evaluate_difficulty(np.zeros((3, 2)), log, test)
    assert error.value.parameter == "predictions"


# ------------------------------------------------------------------- leakage
def test_fitting_on_simulated_truth_warns_and_truth_free_does_not() -> None:
    log = generate(SyntheticConfig(n_queries=40), seed=0)
    with pytest.warns(UserWarning, match="simulated"):
        predictor(n_estimators=5, calibration=None).fit(log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor(n_estimators=5, calibration=None, **TRUTH_FREE).fit(log)


@pytest.mark.filterwarnings("ignore:.*simulated")
def test_simulated_text_leaks_the_difficulty(synthetic) -> None:
    """Why the quality tests switch text off: the generator writes d into the text."""
    log, _, train, test = synthetic
    model = predictor(n_estimators=100, exclude_metadata=SIMULATED_TRUTH)
    rho = per_arm_spearman(model.fit(log, train).predict(log, test), log, test)
    assert min(rho) > 0.8


def test_without_signal_held_out_ranking_is_chance(synthetic) -> None:
    """Truth excluded and nothing else informative (task is independent of d)."""
    log, _, train, test = synthetic
    model = predictor(n_estimators=100, **TRUTH_FREE).fit(log, train)
    assert max(abs(r) for r in per_arm_spearman(model.predict(log, test), log, test)) < 0.15


# ------------------------------------------------------------------- quality
def test_noisy_feature_gives_positive_spearman_and_beats_constant_brier(synthetic) -> None:
    log, hint, train, test = synthetic
    model = predictor(**TRUTH_FREE).fit(log, train, features=hint)
    report = evaluate_difficulty(model.predict(log, test, features=hint), log, test)
    pooled = report["pooled"]
    assert pooled["spearman"] > 0.7
    assert pooled["brier"] < 0.7 * pooled["brier_baseline"]
    assert pooled["auroc_never_solved"] > 0.8
    assert pooled["ece"] < 0.06
    for arm in log.arms:
        assert report["per_arm"][arm]["spearman"] > 0.6
        assert report["per_arm"][arm]["brier"] < report["per_arm"][arm]["brier_baseline"]


def test_numeric_metadata_column_carries_the_signal_too(synthetic) -> None:
    log, hint, train, test = synthetic
    tagged = with_queries(log, hint=hint[:, 0])
    model = predictor(n_estimators=100, **TRUTH_FREE).fit(tagged, train)
    assert "meta:hint" in model.feature_names_
    assert min(per_arm_spearman(model.predict(tagged, test), tagged, test)) > 0.6


@pytest.mark.filterwarnings("ignore:.*simulated")  # the text is replaced: no leak
def test_text_features_learn_from_words(synthetic) -> None:
    log, _, train, test = synthetic
    rng = np.random.default_rng(5)
    hard = np.array([f"hard{i}" for i in range(12)])
    easy = np.array([f"easy{i}" for i in range(12)])
    difficulty = log.queries.metadata["difficulty"]
    text = np.array([
        " ".join(np.where(rng.random(20) < d, rng.choice(hard, 20), rng.choice(easy, 20)))
        for d in difficulty], dtype=object)
    worded = with_queries(log, text=text)
    model = predictor(n_estimators=100, exclude_metadata=SIMULATED_TRUTH)
    model.fit(worded, train)
    assert any(name.startswith("text:svd") for name in model.feature_names_)
    assert min(per_arm_spearman(model.predict(worded, test), worded, test)) > 0.5


# ------------------------------------------------------------- cross-fitting
def test_cross_fit_predictions_are_out_of_fold(synthetic) -> None:
    """A unique id per query is memorised in-sample and useless out-of-fold."""
    log, _, train, _ = synthetic
    ids = np.random.default_rng(0).permutation(log.n_queries).astype(float)[:, None]
    model = predictor(calibration=None, metadata_columns=(), text_features=False,
                                **MEMORISE)
    in_sample = clone(model).fit(log, train, features=ids).predict(log, train, features=ids)
    fitted = evaluate_difficulty(in_sample, log, train)["pooled"]
    # LightGBM keeps >= 3 rows per histogram bin: ids are memorised in pairs, not singly.
    assert min(per_arm_spearman(in_sample, log, train)) > 0.6
    assert fitted["brier"] < 0.7 * fitted["brier_baseline"]
    out_of_fold = cross_fit_predict(model, log, train, n_splits=5, random_state=0,
                                    features=ids)
    assert out_of_fold.shape == (len(train), len(log.arms))
    assert max(abs(r) for r in per_arm_spearman(out_of_fold, log, train)) < 0.15
    honest = evaluate_difficulty(out_of_fold, log, train)["pooled"]
    assert honest["brier"] > honest["brier_baseline"]


def test_cross_fit_is_seeded_and_keeps_the_signal(synthetic) -> None:
    log, hint, train, _ = synthetic
    model = predictor(n_estimators=60, calibration=None, **TRUTH_FREE)
    first = cross_fit_predict(model, log, train, n_splits=3, random_state=4, features=hint)
    again = cross_fit_predict(model, log, train, n_splits=3, random_state=4, features=hint)
    other = cross_fit_predict(model, log, train, n_splits=3, random_state=5, features=hint)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert min(per_arm_spearman(first, log, train)) > 0.6


# --------------------------------------------------------------- calibration
@pytest.mark.parametrize("calibration", ["isotonic", "sigmoid"])
def test_calibration_fixes_an_overconfident_booster(synthetic, calibration: str) -> None:
    """A booster that memorises ids next to a weak hint is overconfident on new queries;
    the out-of-fold calibration map pulls it back (ECE about 0.12 -> 0.03 here). The
    calibrated predictor's booster is the uncalibrated one: only the map differs."""
    log, _, train, test = synthetic
    rng = np.random.default_rng(1)
    weak = log.queries.metadata["difficulty"] + rng.normal(0.0, 0.3, log.n_queries)
    features = np.column_stack([weak, rng.permutation(log.n_queries)])
    raw = predictor(calibration=None, **TRUTH_FREE, **MEMORISE)
    raw.fit(log, train, features=features)
    calibrated = clone(raw).set_params(calibration=calibration)
    calibrated.fit(log, train, features=features)
    assert raw.booster_.model_to_string() == calibrated.booster_.model_to_string()
    uncalibrated = raw.predict(log, test, features=features)
    assert np.array_equal(calibrated.predict(log, test, features=features, calibrated=False),
                          uncalibrated)
    before = evaluate_difficulty(uncalibrated, log, test)["pooled"]
    after = evaluate_difficulty(calibrated.predict(log, test, features=features), log,
                                test)["pooled"]
    assert after["ece"] < 0.6 * before["ece"]
    assert after["brier"] < before["brier"]


# --------------------------------------------------------------- persistence
@pytest.mark.filterwarnings("ignore:.*simulated")
@pytest.mark.parametrize("calibration", ["isotonic", "sigmoid", None])
def test_save_load_round_trip_is_exact(synthetic, tmp_path: Path, calibration) -> None:
    log, hint, train, test = synthetic
    model = predictor(n_estimators=40, calibration=calibration,
                                exclude_metadata=SIMULATED_TRUTH)  # text on: all features
    model.fit(log, train, features=hint)
    folder = model.save(tmp_path / "predictor")
    expected = {CONFIG_FILE, MODEL_FILE, TEXT_BASIS_FILE}
    assert {p.name for p in folder.iterdir()} == expected
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["arms"] == list(log.arms)
    assert config["features"]["metadata"][0]["categories"] == sorted(set(
        log.queries.metadata["task"][train]))
    assert (config["calibrator"] is None) == (calibration is None)
    loaded = DifficultyPredictor.load(folder)
    assert loaded.get_params() == model.get_params()
    assert loaded.feature_names_ == model.feature_names_
    assert np.array_equal(loaded.predict(log, features=hint), model.predict(log, features=hint))
    unseen = with_queries(log, task=np.full(log.n_queries, "astrology", dtype=object))
    assert np.array_equal(loaded.predict(unseen, test, features=hint),
                          model.predict(unseen, test, features=hint))


def test_load_refuses_a_folder_without_a_predictor(tmp_path: Path) -> None:
    with pytest.raises(AllocatorError, match=CONFIG_FILE):
        DifficultyPredictor.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(AllocatorError, match="format"):
        DifficultyPredictor.load(tmp_path)


def test_load_refuses_text_features_this_code_would_compute_differently(
    tmp_path: Path,
) -> None:
    log = generate(SyntheticConfig(n_queries=40), seed=0)
    folder = predictor(n_estimators=5, calibration=None, **TRUTH_FREE).fit(log).save(tmp_path)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["features"]["text"]["hashing"][1]["ngram_range"] = [2, 4]
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(AllocatorError, match="hashing"):
        DifficultyPredictor.load(folder)


# ------------------------------------------------------------------- metrics
def test_evaluate_difficulty_matches_hand_computed_values() -> None:
    correct = [1, 1, 0, 1, 0, 0, 1]
    kinds = ["sample"] * 6 + ["refine"]  # the refinement is not a sample: ignored
    table = pa.table({
        "query_id": ["a"] * 4 + ["b"] * 3,
        "answer": ["x"] * 7,
        "correct": pa.array(correct, pa.float32()),
        "kind": kinds,
    })
    log, _ = AttemptLog.from_arrow(table)
    report = evaluate_difficulty(np.array([[0.5], [0.25]]), log)
    pooled = report["pooled"]
    # a: rate 3/4 at 0.5; b: rate 0/2 at 0.25. Brier over the 6 samples:
    assert pooled["brier"] == pytest.approx((3 * 0.25 + 0.25 + 2 * 0.0625) / 6)
    assert pooled["brier_baseline"] == pytest.approx((4 * 0.25 + 2 * 0.25) / 6)
    assert pooled["ece"] == pytest.approx((4 * 0.25 + 2 * 0.25) / 6)
    assert pooled["spearman"] == pytest.approx(1.0)
    assert pooled["auroc_never_solved"] == pytest.approx(1.0)
    assert pooled["attempts"] == 6 and pooled["pairs"] == 2
    assert report["per_arm"][log.arms[0]] == pooled


def test_evaluate_difficulty_on_truth_and_on_a_constant(synthetic) -> None:
    log, _, _, test = synthetic
    d = log.queries.metadata["difficulty"][test]
    skill = np.array([{"small": 0.45, "large": 0.70}[arm] for arm in log.arms])
    truth = 1.0 / (1.0 + np.exp(-10.0 * (skill[None, :] - d[:, None])))
    good = evaluate_difficulty(truth, log, test)["pooled"]
    assert good["spearman"] > 0.85 and good["ece"] < 0.05
    assert good["brier"] < 0.7 * good["brier_baseline"]
    rates = evaluate_difficulty(np.full_like(truth, 0.5), log, test)
    constant = np.array([rates["per_arm"][arm]["solve_rate"] for arm in log.arms])
    flat = evaluate_difficulty(np.broadcast_to(constant, truth.shape).copy(), log, test)
    assert flat["pooled"]["brier"] == pytest.approx(flat["pooled"]["brier_baseline"])
    assert np.isnan(flat["per_arm"][log.arms[0]]["spearman"])


# ----------------------------------------------------------------- real logs
@pytest.mark.slow
@pytest.mark.public_logs
def test_reasoning_gym_easy_held_out_quality(public_logs: Path) -> None:
    """Real runs: 10 models on ~6,700 easy reasoning-gym questions, 1-3 samples each.

    Measured (seed 0, 5,000 training and 1,659 held-out queries, one thread): pooled
    held-out Spearman 0.795, per arm 0.67 (o3-mini) to 0.80 (QwQ-32B), AUROC(never
    solved) 0.94, Brier 0.103 against 0.220 for the per-arm constant, ECE 0.009
    calibrated against 0.014 for the booster's own output. Without text features the
    pooled Spearman is 0.785; without task/category metadata (text only) 0.788.
    """
    log, _ = convert(public_logs / "reasoning_gym" / "samples.jsonl.gz", "reasoning-gym",
                     difficulty="easy")
    order = np.random.default_rng(0).permutation(log.n_queries)
    train, test = np.sort(order[:5000]), np.sort(order[5000:])
    model = predictor().fit(log, train)
    report = evaluate_difficulty(model.predict(log, test), log, test)
    raw = evaluate_difficulty(model.predict(log, test, calibrated=False), log, test)
    pooled = report["pooled"]
    assert pooled["spearman"] > 0.6
    assert min(r["spearman"] for r in report["per_arm"].values()) > 0.4
    assert pooled["auroc_never_solved"] > 0.8
    assert pooled["brier"] < 0.7 * pooled["brier_baseline"]
    assert pooled["ece"] <= raw["pooled"]["ece"]


@pytest.mark.parametrize(("model", "basis"), [
    ("/etc/passwd", None), ("../outside.lgb.txt", None), ("sub/difficulty.lgb.txt", None),
    ("difficulty.json", None), ("difficulty.lgb.txt", "../../x.npy"),
])
def test_load_opens_no_file_outside_the_predictor_folder(tmp_path: Path, model: str,
                                                         basis: str | None) -> None:
    log = generate(SyntheticConfig(n_queries=60), seed=0)
    folder = DifficultyPredictor(n_estimators=3, text_features=False, num_threads=1,
                                 exclude_metadata=SIMULATED_TRUTH).fit(log).save(
                                     tmp_path / "predictor")
    (tmp_path / "outside.lgb.txt").write_bytes((folder / "difficulty.lgb.txt").read_bytes())
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["files"] = {"model": model, "text_basis": basis}
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(AllocatorError, match="plain file name"):
        DifficultyPredictor.load(folder)


def test_the_serving_model_knows_every_parameter_the_estimator_saves() -> None:
    """The runtime refuses unknown saved parameters; it must know exactly the estimator's."""
    from allocator.predictor import ESTIMATOR_PARAMS

    assert set(DifficultyPredictor().get_params()) == ESTIMATOR_PARAMS

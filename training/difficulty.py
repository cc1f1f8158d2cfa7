"""The difficulty predictor: per query and arm, the chance that ONE attempt is correct.

:class:`DifficultyPredictor` is a scikit-learn-contract estimator on LightGBM (one model
for all arms, calibrated out of fold, saved without pickle); :func:`cross_fit_predict`
gives out-of-fold predictions for the training queries, so that nothing downstream (the
RL policy) trains on the predictor's in-sample output. The class docstring covers rows,
target, calibration, metrics, persistence and the leakage guard on simulated logs.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import sklearn
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from allocator.errors import AllocatorError, ParameterError
from allocator.logs.schema import KIND_SAMPLE
from allocator.logs.table import AttemptLog
from allocator.predictor import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    MODEL_FILE,
    TEXT_BASIS_FILE,
    Calibration,
    DifficultyModel,
    check_queries,
    design,
    logit,
    predict_difficulty,
)
from allocator.query_features import QueryFeatures, TextSettings

__all__ = [
    "CALIBRATIONS",
    "CONFIG_FILE",
    "MODEL_FILE",
    "SIMULATED_TRUTH",
    "TEXT_BASIS_FILE",
    "Calibration",
    "DifficultyPredictor",
    "cross_fit_predict",
    "fit_calibration",
]

#: Metadata columns of simulated logs that hold the true difficulty.
SIMULATED_TRUTH = ("difficulty", "component")
#: Accepted values of ``calibration``.
CALIBRATIONS = ("isotonic", "sigmoid", None)

_OWNER = "DifficultyPredictor"


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# ------------------------------------------------------------------ calibration
def fit_calibration(kind: str, p: np.ndarray, y: np.ndarray, w: np.ndarray) -> Calibration:
    """A :class:`~allocator.predictor.Calibration` fitted on predictions ``p``,
    fractional labels ``y`` and weights ``w``."""
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(p, y, sample_weight=w)
        return Calibration(kind, iso.X_thresholds_.astype(np.float64),
                   iso.y_thresholds_.astype(np.float64))
    z, total = logit(p), w.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = theta[0] * z + theta[1]
        # weighted cross-entropy with fractional labels, and its gradient
        value = np.sum(w * (np.logaddexp(0.0, s) - y * s)) / total
        residual = w * (1.0 / (1.0 + np.exp(-s)) - y) / total
        return float(value), np.array([residual @ z, residual.sum()])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibration(kind, np.empty(0), np.empty(0), float(result.x[0]), float(result.x[1]))


# ---------------------------------------------------------------- log helpers
def _solve_counts(log: AttemptLog, queries: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per (position in ``queries``, arm): sample attempts, sum of grades, sum of squares."""
    starts, stops = log.offsets[queries], log.offsets[queries + 1]
    lengths = stops - starts
    position = np.repeat(np.arange(len(queries)), lengths)
    rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    rows = rows + np.arange(int(lengths.sum()))
    grade = log.correct[rows].astype(np.float64)
    keep = (log.kind[rows] == KIND_SAMPLE) & ~np.isnan(grade)
    width = len(log.arms)
    key = position[keep] * width + log.arm[rows][keep]
    size = len(queries) * width

    def count(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(key, weights=weights, minlength=size).reshape(len(queries), width)

    return count(None), count(grade[keep]), count(grade[keep] ** 2)


# ------------------------------------------------------------------ estimator
class DifficultyPredictor(BaseEstimator):
    """Predicts, per query and arm, the probability that one attempt is correct.

    - **Rows and target.** One model for all arms. A training row is a (query, arm) pair
      with at least one logged ``sample`` attempt; its features are the query's features
      (:mod:`allocator.query_features`: metadata, text statistics, SVD of hashed n-grams, user
      columns) plus the arm as a categorical column; its label is the arm's empirical solve
      rate on the query (mean grade, in [0, 1]) and its weight the number of attempts. The
      objective is LightGBM's ``cross_entropy``, which takes fractional labels: with these
      weights it is exactly the log-loss of the individual attempts.
    - **Calibration** (``calibration="isotonic"|"sigmoid"``): the training queries are split
      into ``calibration_splits`` folds *by query*; boosters trained on the other folds
      predict each fold, and an isotonic map (or a Platt sigmoid on the logit) is fitted on
      these out-of-fold predictions against the attempts' outcomes. The final booster is then
      trained on all training queries with the same settings (so it equals the booster of a
      ``calibration=None`` predictor) and the map is applied to its output. No data is held
      back from the booster; the price is ``calibration_splits`` extra fits. (scikit-learn's
      ``CalibratedClassifierCV`` needs binary labels and a classifier; this model has
      fractional labels, so the map is fitted directly and stored as its numbers: isotonic
      thresholds, applied with ``numpy.interp``, or the sigmoid's ``a, b``.)
    - **Cross-fitting**: :func:`cross_fit_predict` gives out-of-fold predictions for the
      training queries (k-fold over queries, seeded), so that nothing downstream (the RL
      policy) trains on the predictor's in-sample output.
    - **Metrics** (`allocator.training.difficulty_metrics`) on held-out queries: Spearman with the
      empirical solve rate, AUROC for never-solved queries, attempt-weighted Brier score
      against a constant-per-arm baseline, and expected calibration error.
    - **Persistence** without pickle: :meth:`DifficultyPredictor.save` writes
      ``difficulty.lgb.txt`` (LightGBM text model), ``difficulty.json`` (parameters, arms,
      feature settings with category vocabularies and hashing parameters, the calibration
      map) and, with text features, ``difficulty.text.npy`` (the SVD basis, a plain float64
      array). :meth:`DifficultyPredictor.load` needs numpy, lightgbm and scikit-learn only
      and predicts exactly as the saved object did.

    Leakage: simulated logs (:mod:`allocator.logs.synthetic`) keep the true difficulty in
    their metadata (``difficulty``, ``component``) *and in the query text* ("Simulated query
    17 (difficulty 0.42)"). Fitting on such a log with those columns or with text features
    warns; pass ``exclude_metadata=SIMULATED_TRUTH, text_features=False`` to measure quality.

    Args:
        n_estimators: boosting rounds.
        learning_rate: LightGBM shrinkage.
        num_leaves: maximum leaves per tree.
        min_child_samples: minimum (query, arm) rows per leaf.
        max_bin: histogram bins per feature (63 is ~10x faster than 255 here, same skill).
        feature_fraction: share of features tried per tree.
        calibration: ``"isotonic"``, ``"sigmoid"`` or ``None`` (see **Calibration** above).
        calibration_splits: query folds for the out-of-fold calibration fits.
        text_features: use the query text (statistics and hashed n-grams).
        text_n_features: hashed columns per analyzer (word 1-2-grams, char_wb 3-5-grams).
        text_components: truncated-SVD components of the hashed text.
        text_max_chars: characters of each text that are hashed.
        metadata_columns: metadata columns to use; ``None`` = all of the log's.
        exclude_metadata: metadata columns never used (e.g. :data:`SIMULATED_TRUTH`).
        max_categories: vocabulary cap of a categorical metadata column (the most
            frequent values; the rest count as missing).
        num_threads: LightGBM threads for fitting and prediction (1 by default: on small
            machines that other work shares, two threads were measured 3-10x slower).
        random_state: seed of the folds, the SVD and LightGBM. Fits are reproducible for
            a given ``random_state`` *and* ``num_threads`` (LightGBM's histogram sums
            depend on the thread count in the last bits).

    Attributes:
        arms_: arm names of the fitted log; prediction columns follow them.
        features_: the fitted :class:`~allocator.query_features.QueryFeatures`.
        feature_names_: the booster's input columns (``arm`` first).
        booster_: the LightGBM booster.
        calibrator_: the :class:`Calibration`, or ``None``.
        n_features_in_: width of the booster's input.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        max_bin: int = 63,
        feature_fraction: float = 1.0,
        calibration: str | None = "isotonic",
        calibration_splits: int = 3,
        text_features: bool = True,
        text_n_features: int = 2**11,
        text_components: int = 64,
        text_max_chars: int = 1000,
        metadata_columns: Sequence[str] | None = None,
        exclude_metadata: Sequence[str] = (),
        max_categories: int = 256,
        num_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.max_bin = max_bin
        self.feature_fraction = feature_fraction
        self.calibration = calibration
        self.calibration_splits = calibration_splits
        self.text_features = text_features
        self.text_n_features = text_n_features
        self.text_components = text_components
        self.text_max_chars = text_max_chars
        self.metadata_columns = metadata_columns
        self.exclude_metadata = exclude_metadata
        self.max_categories = max_categories
        self.num_threads = num_threads
        self.random_state = random_state

    # --------------------------------------------------------------- checks
    def _check_params(self) -> None:
        integers = {"n_estimators": 1, "num_leaves": 2, "min_child_samples": 1, "max_bin": 2,
                    "calibration_splits": 2, "text_n_features": 16, "text_components": 1,
                    "text_max_chars": 1, "max_categories": 1, "num_threads": 1,
                    "random_state": 0}
        for name, low in integers.items():
            value = getattr(self, name)
            if not (_is_int(value) and value >= low):
                raise ParameterError(_OWNER, name, f"an integer >= {low}", value)
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < np.inf):
            raise ParameterError(_OWNER, "learning_rate", "a number > 0", self.learning_rate)
        if not (isinstance(self.feature_fraction, (int, float))
                and 0 < self.feature_fraction <= 1):
            raise ParameterError(_OWNER, "feature_fraction", "a number in (0, 1]",
                                 self.feature_fraction)
        if self.calibration not in CALIBRATIONS:
            raise ParameterError(_OWNER, "calibration", f"one of {list(CALIBRATIONS)}",
                                 self.calibration)
        if not isinstance(self.text_features, (bool, np.bool_)):
            raise ParameterError(_OWNER, "text_features", "True or False", self.text_features)
        for name in ("metadata_columns", "exclude_metadata"):
            value = getattr(self, name)
            if value is None and name == "metadata_columns":
                continue
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ParameterError(_OWNER, name, "a list of column names", value)

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "cross_entropy",
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_data_in_leaf": int(self.min_child_samples),
            "max_bin": int(self.max_bin),
            "feature_fraction": float(self.feature_fraction),
            "num_threads": int(self.num_threads),
            "seed": int(self.random_state),
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }

    # ------------------------------------------------------------------ fit
    def fit(
        self, log: AttemptLog, queries: np.ndarray | None = None, *,
        features: np.ndarray | None = None,
    ) -> DifficultyPredictor:
        """Fit on the ``sample`` attempts of the given queries.

        Args:
            log: the log.
            queries: training query indices (``None`` = all).
            features: optional user features, shape (log.n_queries, k), aligned with the
                log's queries (not with ``queries``); ``predict`` then needs them too.

        Returns:
            ``self``.

        Raises:
            ParameterError: for invalid parameters or arguments (the message names it).
            AllocatorError: when the queries hold no graded sample attempt.
        """
        self._check_params()
        queries = check_queries(log, queries, f"{_OWNER}.fit")
        if self.calibration is not None and len(queries) < 2 * self.calibration_splits:
            raise ParameterError(_OWNER, "calibration_splits", "at most half the number "
                                 f"of training queries ({len(queries)})",
                                 self.calibration_splits)
        n, hits, _ = _solve_counts(log, queries)
        qi, ai = np.nonzero(n > 0)
        if len(qi) == 0:
            raise AllocatorError(f"{_OWNER}.fit: the training queries hold no graded "
                                 "'sample' attempt to learn from.")
        query_features, matrix = self._fit_features(log, queries, features)
        x = design(matrix[qi], ai)
        y, w = hits[qi, ai] / n[qi, ai], n[qi, ai].astype(np.float64)
        categorical = [0] + [1 + i for i in query_features.categorical_indices]
        self.calibrator_ = (None if self.calibration is None
                            else self._fit_calibration(x, y, w, qi, categorical))
        self.booster_ = self._train(x, y, w, categorical)
        self.arms_ = tuple(log.arms)
        self.features_ = query_features
        self.feature_names_ = ["arm", *query_features.feature_names]
        self.n_features_in_ = x.shape[1]
        return self

    def _fit_features(
        self, log: AttemptLog, queries: np.ndarray, features: np.ndarray | None
    ) -> tuple[QueryFeatures, np.ndarray]:
        fitted, matrix = QueryFeatures.fit_transform(
            log, queries,
            text=TextSettings(bool(self.text_features), int(self.text_n_features),
                              int(self.text_components), int(self.text_max_chars)),
            metadata_columns=self.metadata_columns, exclude_metadata=self.exclude_metadata,
            max_categories=int(self.max_categories), features=features,
            random_state=int(self.random_state), owner=f"{_OWNER}.fit")
        leaked = [c.name for c in fitted.metadata if c.name in SIMULATED_TRUTH]
        if log.simulated and (leaked or fitted.text.enabled):
            warnings.warn(
                f"{_OWNER}.fit: the log is simulated and its true difficulty is in the "
                f"features (metadata {leaked}, text features {fitted.text.enabled}: the "
                "text reads 'Simulated query 17 (difficulty 0.42)'). Predictions will look "
                "far better than on real logs. To measure quality pass "
                "exclude_metadata=SIMULATED_TRUTH, text_features=False.",
                UserWarning, stacklevel=3)
        return fitted, matrix

    def _train(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray, categorical: list[int]
    ) -> lgb.Booster:
        params = self._lgb_params()
        dataset = lgb.Dataset(x, label=y, weight=w, categorical_feature=categorical,
                              params=params, free_raw_data=True)
        trained = lgb.train(params, dataset, num_boost_round=int(self.n_estimators))
        # Through the text form, so a saved and reloaded model is the very same model.
        return lgb.Booster(model_str=trained.model_to_string())

    def _fit_calibration(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray, group: np.ndarray,
        categorical: list[int],
    ) -> Calibration:
        positions = np.unique(group)
        folds = KFold(int(self.calibration_splits), shuffle=True,
                      random_state=int(self.random_state))
        out_of_fold = np.empty(len(y))
        for _, held in folds.split(positions):
            test = np.isin(group, positions[held])
            booster = self._train(x[~test], y[~test], w[~test], categorical)
            out_of_fold[test] = booster.predict(x[test], num_threads=int(self.num_threads))
        return fit_calibration(str(self.calibration), out_of_fold, y, w)

    # -------------------------------------------------------------- predict
    def predict(
        self, log: AttemptLog, queries: np.ndarray | None = None, *,
        features: np.ndarray | None = None, calibrated: bool = True,
    ) -> np.ndarray:
        """Probability that one attempt of each arm is correct.

        Args:
            log: a log with the metadata columns the predictor was fitted with.
            queries: query indices (``None`` = all; repeats allowed).
            features: the user features, if fitted with them (shape (log.n_queries, k)).
            calibrated: apply the calibration map (``False`` gives the booster's own
                output, which is what a ``calibration=None`` predictor returns).

        Returns:
            Array of shape (len(queries), len(arms_)), columns in the order of ``arms_``.

        Raises:
            sklearn.exceptions.NotFittedError: before :meth:`fit`.
            ParameterError: for invalid queries, or a log/features that do not match.
        """
        check_is_fitted(self)
        return predict_difficulty(self, log, queries, features=features, calibrated=calibrated,
                                  num_threads=int(self.num_threads), owner=f"{_OWNER}.predict")

    # ---------------------------------------------------------- persistence
    def save(self, path_dir: str | Path) -> Path:
        """Write the fitted predictor to a folder (created if needed), without pickle.

        Returns:
            The folder.
        """
        check_is_fitted(self)
        folder = Path(path_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / MODEL_FILE))
        if self.features_.components is not None:
            np.save(folder / TEXT_BASIS_FILE, self.features_.components, allow_pickle=False)
        params = {k: sorted(v) if isinstance(v, (set, frozenset))
                  else list(v) if isinstance(v, (tuple, list)) else v
                  for k, v in self.get_params().items()}
        config = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "params": params,
            "arms": list(self.arms_),
            "features": self.features_.to_dict(),
            "feature_names": self.feature_names_,
            "calibrator": None if self.calibrator_ is None else self.calibrator_.to_dict(),
            "files": {"model": MODEL_FILE,
                      "text_basis": TEXT_BASIS_FILE if self.features_.components is not None
                      else None},
            "written_by": {"lightgbm": lgb.__version__, "scikit-learn": sklearn.__version__,
                           "numpy": np.__version__},
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, path_dir: str | Path) -> DifficultyPredictor:
        """Restore a predictor written by :meth:`save` (see
        :meth:`allocator.predictor.DifficultyModel.load`).

        Raises:
            AllocatorError: if the folder does not hold a saved predictor of this format,
                or a file is malformed.
        """
        return cls._from_model(DifficultyModel.load(path_dir))

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, source: str) -> DifficultyPredictor:
        """Build a predictor from the bytes of its files (see
        :meth:`allocator.predictor.DifficultyModel.from_files`); predictions run on one
        thread (the saved ``num_threads`` is not trusted: the answers are the same).

        Raises:
            AllocatorError: a file is missing or malformed.
        """
        return cls._from_model(DifficultyModel.from_files(files, source=source))

    @classmethod
    def _from_model(cls, model: DifficultyModel) -> DifficultyPredictor:
        predictor = cls(**{**model.params, "num_threads": 1})
        predictor.features_ = model.features_
        predictor.booster_ = model.booster_
        predictor.calibrator_ = model.calibrator_
        predictor.arms_ = model.arms_
        predictor.feature_names_ = list(model.feature_names_)
        predictor.n_features_in_ = model.n_features_in_
        return predictor


# --------------------------------------------------------------- cross-fitting
def cross_fit_predict(
    estimator: DifficultyPredictor,
    log: AttemptLog,
    queries: np.ndarray | None = None,
    n_splits: int = 5,
    random_state: int = 0,
    *,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold predictions for the given (training) queries.

    The queries are split into ``n_splits`` seeded folds (a group k-fold with the query
    as the group: all attempts of a query fall in one fold); each fold is predicted by a
    clone of ``estimator`` fitted on the other folds.

    Args:
        estimator: an unfitted (or fitted: it is cloned) predictor.
        log: the log.
        queries: query indices (``None`` = all), distinct.
        n_splits: number of folds, in [2, len(queries)].
        random_state: seed of the fold assignment.
        features: user features, as for :meth:`DifficultyPredictor.fit`.

    Returns:
        Array of shape (len(queries), len(log.arms)), row ``i`` for ``queries[i]``.
    """
    owner = "cross_fit_predict"
    queries = check_queries(log, queries, owner)
    if not (_is_int(n_splits) and 2 <= n_splits <= len(queries)):
        raise ParameterError(owner, "n_splits", f"an integer in [2, {len(queries)}]", n_splits)
    if not (_is_int(random_state) and random_state >= 0):
        raise ParameterError(owner, "random_state", "an integer >= 0", random_state)
    out = np.full((len(queries), len(log.arms)), np.nan)
    folds = KFold(int(n_splits), shuffle=True, random_state=int(random_state))
    for train, test in folds.split(queries):
        model = clone(estimator).fit(log, queries[train], features=features)
        out[test] = model.predict(log, queries[test], features=features)
    return out


# --------------------------------------------------------------------- metrics

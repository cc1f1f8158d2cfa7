"""The difficulty predictor at serving time: a fitted model's files in, priors out.

A bundle carries the predictor that its policy trained with (``difficulty.json``, the
LightGBM text model, the SVD basis of the text features); :class:`DifficultyModel` reads
those bytes (checked, never pickle) and predicts, per query and arm, the chance that one
attempt is correct. Fitting lives on the training side; both share this module's
prediction path, so a fitted predictor and the model read back from its files predict
the same numbers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from allocator.errors import AllocatorError, ParameterError
from allocator.lgbm_text import checked_model_text
from allocator.logs.table import AttemptLog
from allocator.query_features import QueryFeatures

__all__ = ["CONFIG_FILE", "ESTIMATOR_PARAMS", "FORMAT", "FORMAT_VERSION", "MODEL_FILE",
           "TEXT_BASIS_FILE", "Calibration", "DifficultyModel", "check_queries", "design",
           "logit", "predict_difficulty", "read_predictor_config"]

FORMAT = "ttc-allocator/difficulty-predictor"
FORMAT_VERSION = 1
MODEL_FILE = "difficulty.lgb.txt"
CONFIG_FILE = "difficulty.json"
TEXT_BASIS_FILE = "difficulty.text.npy"
#: The estimator's parameters a saved predictor records (``training``'s
#: ``DifficultyPredictor`` takes exactly these; a test keeps them equal).
ESTIMATOR_PARAMS = frozenset({
    "n_estimators", "learning_rate", "num_leaves", "min_child_samples", "max_bin",
    "feature_fraction", "calibration", "calibration_splits", "text_features",
    "text_n_features", "text_components", "text_max_chars", "metadata_columns",
    "exclude_metadata", "max_categories", "num_threads", "random_state"})
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted monotone map from the booster's probability to a calibrated one.

    Attributes:
        kind: ``"isotonic"`` or ``"sigmoid"``.
        x: isotonic thresholds (increasing); empty for a sigmoid.
        y: isotonic values at the thresholds; empty for a sigmoid.
        a: sigmoid slope on the logit.
        b: sigmoid intercept.
    """

    kind: str
    x: np.ndarray
    y: np.ndarray
    a: float = 1.0
    b: float = 0.0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (isotonic: linear between thresholds, clipped)."""
        if self.kind == "isotonic":
            return np.interp(p, self.x, self.y)
        return 1.0 / (1.0 + np.exp(-(self.a * logit(p) + self.b)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (floats round-trip exactly through JSON)."""
        if self.kind == "isotonic":
            return {"kind": self.kind, "x": self.x.tolist(), "y": self.y.tolist()}
        return {"kind": self.kind, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        if data["kind"] == "isotonic":
            return cls("isotonic", np.array(data["x"], np.float64),
                       np.array(data["y"], np.float64))
        return cls("sigmoid", np.empty(0), np.empty(0), float(data["a"]), float(data["b"]))


def check_queries(
    log: AttemptLog, queries: np.ndarray | Sequence[int] | None, owner: str,
    unique: bool = True,
) -> np.ndarray:
    """``queries`` as distinct (or, ``unique=False``, any) int64 indices of ``log``'s
    queries (``None`` = all), or a :class:`ParameterError` naming ``owner``."""
    if queries is None:
        return np.arange(log.n_queries, dtype=np.int64)
    array = np.asarray(queries)
    expected = (f"a non-empty 1-d array of {'distinct ' if unique else ''}integer query "
                f"indices in [0, {log.n_queries})")
    if array.ndim != 1 or len(array) == 0 or array.dtype.kind not in "iu":
        raise ParameterError(owner, "queries", expected, f"{array.dtype} array of shape "
                             f"{array.shape}")
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= log.n_queries:
        raise ParameterError(owner, "queries", expected, f"values in [{array.min()}, "
                             f"{array.max()}]")
    if unique and len(np.unique(array)) != len(array):
        raise ParameterError(owner, "queries", expected, "repeated indices")
    return array



def design(query_features: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """The booster's input: the arm code in column 0, then the query's features."""
    return np.column_stack([arm.astype(np.float64), query_features])


def predict_difficulty(
    model: Any, log: AttemptLog, queries: np.ndarray | Sequence[int] | None, *,
    features: np.ndarray | None, calibrated: bool, num_threads: int, owner: str,
) -> np.ndarray:
    """Probability that one attempt of each arm is correct, shape (queries, arms).

    Args:
        model: a fitted predictor (``arms_``, ``features_``, ``booster_``,
            ``calibrator_``): a :class:`DifficultyModel` or ``training``'s estimator.
        log: a log with the metadata columns the predictor was fitted with.
        queries: query indices (``None`` = all; repeats allowed).
        features: the user features, if fitted with them (shape (log.n_queries, k)).
        calibrated: apply the calibration map.
        num_threads: LightGBM threads.
        owner: the caller, for messages.
    """
    queries = check_queries(log, queries, owner, unique=False)
    query_features = model.features_.transform(log, queries, features, owner)
    width = len(model.arms_)
    x = design(np.repeat(query_features, width, axis=0),
               np.tile(np.arange(width), len(queries)))
    p = model.booster_.predict(x, num_threads=num_threads)
    if calibrated and model.calibrator_ is not None:
        p = model.calibrator_(p)
    return np.asarray(p, dtype=np.float64).reshape(len(queries), width)


@dataclass(frozen=True, eq=False)
class DifficultyModel:
    """A fitted difficulty predictor read back from its files (inference only).

    Attributes:
        arms_: arm names; prediction columns follow them.
        features_: the fitted :class:`~allocator.query_features.QueryFeatures`.
        feature_names_: the booster's input columns (``arm`` first).
        booster_: the LightGBM booster.
        calibrator_: the :class:`Calibration`, or ``None``.
        params: the estimator's parameters as saved (for ``training`` to rebuild it).
    """

    arms_: tuple[str, ...]
    features_: QueryFeatures
    feature_names_: list[str]
    booster_: lgb.Booster
    calibrator_: Calibration | None
    params: dict[str, Any]

    @property
    def n_features_in_(self) -> int:
        """Width of the booster's input."""
        return len(self.feature_names_)

    def predict(
        self, log: AttemptLog, queries: np.ndarray | Sequence[int] | None = None, *,
        features: np.ndarray | None = None, calibrated: bool = True,
    ) -> np.ndarray:
        """Probability that one attempt of each arm is correct (one thread).

        Returns:
            Array of shape (len(queries), len(arms_)), columns in the order of ``arms_``.
        """
        return predict_difficulty(self, log, queries, features=features,
                                  calibrated=calibrated, num_threads=1,
                                  owner="DifficultyModel.predict")

    @classmethod
    def load(cls, path_dir: str | Path) -> DifficultyModel:
        """Read a predictor folder (``difficulty.json`` and the files it names, each read
        once; plain names in the same folder only).

        Raises:
            AllocatorError: the folder does not hold a saved predictor of this format, or a
                file is malformed.
        """
        folder = Path(path_dir)
        try:
            files = {CONFIG_FILE: (folder / CONFIG_FILE).read_bytes()}
            named = json.loads(files[CONFIG_FILE]).get("files") or {}
            for name in (named.get("model"), named.get("text_basis")):
                if isinstance(name, str) and _is_plain_name(name) and name != CONFIG_FILE:
                    files[name] = (folder / name).read_bytes()
        except (OSError, ValueError, AttributeError) as error:
            raise AllocatorError(f"{folder}: no readable {CONFIG_FILE} or model file "
                                 f"({error}).") from error
        return cls.from_files(files, source=str(folder))

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, source: str) -> DifficultyModel:
        """Build the model from the bytes of its files (e.g. a bundle's, verified once at
        load: :attr:`allocator.bundle.Bundle.predictor_files`), never touching disk.

        The model text is checked (:func:`allocator.lgbm_text.checked_model_text`) before
        LightGBM parses it, and only its trees are parsed.

        Args:
            files: file name -> bytes; ``difficulty.json`` and the files it names.
            source: where the files come from (for messages).

        Raises:
            AllocatorError: a file is missing or malformed.
        """
        config = read_predictor_config(files, source)
        try:
            return cls._from_config(config, files, source)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            if isinstance(error, AllocatorError):
                raise
            raise AllocatorError(f"{source}/{CONFIG_FILE}: malformed settings ({error!r}); "
                                 "save the predictor again.") from None

    @classmethod
    def _from_config(cls, config: dict[str, Any], files: Mapping[str, bytes],
                     source: str) -> DifficultyModel:
        params = dict(config["params"])
        unknown = sorted(set(params) - ESTIMATOR_PARAMS)
        if unknown:
            raise TypeError(f"unknown parameters {unknown}")
        for name in ("metadata_columns", "exclude_metadata"):
            if params.get(name) is not None:
                params[name] = tuple(params[name])
        model, basis = config["files"]["model"], config["files"]["text_basis"]
        components = None if basis is None else _npy(files[basis], f"{source}/{basis}")
        features = QueryFeatures.from_dict(config["features"], components)
        try:
            text = checked_model_text(files[model], len(config["feature_names"]))
            booster = lgb.Booster(model_str=text)
        except (ValueError, lgb.basic.LightGBMError) as error:
            raise AllocatorError(f"{source}/{model}: not a valid LightGBM model of "
                                 f"{len(config['feature_names'])} features ({error}).") from None
        calibrator = config["calibrator"]
        return cls(tuple(config["arms"]), features, list(config["feature_names"]), booster,
                   None if calibrator is None else Calibration.from_dict(calibrator), params)


def _is_plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


def read_predictor_config(files: Mapping[str, bytes], source: str) -> dict[str, Any]:
    """``difficulty.json`` of this format, naming files among ``files`` (plain names)."""
    try:
        config = json.loads(files[CONFIG_FILE])
        if config.get("format") != FORMAT or config.get("version") != FORMAT_VERSION:
            raise AllocatorError(f"{source}/{CONFIG_FILE}: not a difficulty predictor of "
                                 f"format {FORMAT} v{FORMAT_VERSION}.")
        named = (config["files"]["model"], config["files"]["text_basis"])
        features = config["feature_names"]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise AllocatorError(f"{source}: no readable {CONFIG_FILE} ({error!r}).") from None
    for i, name in enumerate(named):
        if (name is not None or i == 0) and not (isinstance(name, str) and _is_plain_name(name)
                                                 and name in files and name != CONFIG_FILE):
            raise AllocatorError(f"{source}/{CONFIG_FILE} names the file {name!r}: expected a "
                                 f"plain file name of the predictor's folder (one of "
                                 f"{sorted(set(files) - {CONFIG_FILE})}), never a path.")
    if not isinstance(features, list) or not features:
        raise AllocatorError(f"{source}/{CONFIG_FILE}: no feature_names.")
    return config


def _npy(data: bytes, where: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise AllocatorError(f"{where}: not a readable .npy array ({error}).") from None

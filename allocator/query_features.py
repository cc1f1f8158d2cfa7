"""Per-query features for the difficulty predictor: text, metadata and user columns.

:class:`QueryFeatures` is the fitted, serialisable (pickle-free) feature map:
:meth:`QueryFeatures.fit` learns what little needs learning on the *training* queries
(metadata column kinds, category vocabularies, the SVD basis of the hashed text);
:meth:`~QueryFeatures.transform` turns any queries of any log into a dense float64 matrix,
one row per query (its columns are listed in :class:`QueryFeatures`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer
from threadpoolctl import threadpool_limits

from allocator.errors import AllocatorError, ParameterError
from allocator.logs.table import AttemptLog

__all__ = [
    "TEXT_STATISTICS",
    "MetadataColumn",
    "QueryFeatures",
    "TextSettings",
    "text_statistics",
]

#: Names of the text statistics, in column order.
TEXT_STATISTICS = (
    "n_chars",
    "n_words",
    "n_lines",
    "n_unique_words",
    "n_digits",
    "n_numbers",
    "n_question_marks",
    "n_math_symbols",
    "mean_word_length",
)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_DIGITS = "0123456789"
_MATH = "+-*/=^<>%"


@dataclass(frozen=True)
class TextSettings:
    """How query text becomes features (all JSON-ready).

    Attributes:
        enabled: whether text features are used at all.
        n_features: hashed columns per analyzer (word and char_wb).
        n_components: SVD components kept (fewer if the training set is small).
        max_chars: characters of each text that are hashed (statistics use all).
    """

    enabled: bool = True
    n_features: int = 2**11
    n_components: int = 64
    max_chars: int = 1000

    def vectorizers(self) -> tuple[HashingVectorizer, HashingVectorizer]:
        """The two stateless hashers: word 1-2-grams and char_wb 3-5-grams."""
        common = {"n_features": self.n_features, "alternate_sign": False, "binary": True,
                  "norm": "l2", "lowercase": True, "dtype": np.float64}
        return (HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common),
                HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common))

    def hashing_params(self) -> list[dict[str, Any]]:
        """The hashers' parameters, JSON-ready (what a saved predictor records)."""
        return [{key: list(value) if isinstance(value, tuple) else value
                 for key, value in v.get_params().items() if key in _HASH_KEYS}
                for v in self.vectorizers()]

    def hashed(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The hashed n-gram matrix, shape (len(texts), 2 * n_features)."""
        clipped = [text[: self.max_chars] for text in texts]
        word, char = self.vectorizers()
        return sp.hstack([word.transform(clipped), char.transform(clipped)], format="csr")


@dataclass(frozen=True)
class MetadataColumn:
    """One metadata column used as a feature.

    Attributes:
        name: the column's name in ``log.queries.metadata``.
        categories: the vocabulary for a categorical column; ``None`` for a numeric one.
    """

    name: str
    categories: tuple[str, ...] | None = None

    @property
    def categorical(self) -> bool:
        """Whether the column is categorical."""
        return self.categories is not None

    def encode(self, values: np.ndarray) -> np.ndarray:
        """The column as float64: category codes (NaN if unseen/missing) or numbers."""
        if self.categories is None:
            return _as_float(values)
        lookup = {name: float(code) for code, name in enumerate(self.categories)}
        return np.array([lookup.get(v, np.nan) for v in _as_labels(values)], dtype=np.float64)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _as_labels(values: np.ndarray) -> list[str | None]:
    return [None if _is_missing(v) else str(v) for v in values]


def _is_numeric(values: np.ndarray) -> bool:
    if values.dtype.kind in "biuf":
        return True
    present = [v for v in values if not _is_missing(v)]
    return bool(present) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in present
    )


def _as_float(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    return np.array([np.nan if _is_missing(v) else float(v) for v in values], np.float64)


def _vocabulary(values: np.ndarray, max_categories: int) -> tuple[str, ...]:
    """The ``max_categories`` most frequent labels (ties by name), sorted by name."""
    labels = [v for v in _as_labels(values) if v is not None]
    names, counts = np.unique(np.array(labels, dtype=str), return_counts=True)
    order = np.lexsort((names, -counts))[:max_categories]
    return tuple(sorted(str(n) for n in names[order]))


def _texts(log: AttemptLog, queries: np.ndarray) -> list[str]:
    return ["" if _is_missing(t) else str(t) for t in log.queries.text[queries]]


def text_statistics(texts: Sequence[str]) -> np.ndarray:
    """The :data:`TEXT_STATISTICS` of each text, shape (len(texts), 9), float64."""
    rows = np.zeros((len(texts), len(TEXT_STATISTICS)))
    for i, text in enumerate(texts):
        words = text.split()
        n_words = len(words)
        rows[i] = (
            len(text),
            n_words,
            text.count("\n") + 1 if text else 0,
            len({w.lower() for w in words}),
            sum(map(text.count, _DIGITS)),
            len(_NUMBER.findall(text)),
            text.count("?"),
            sum(map(text.count, _MATH)),
            sum(map(len, words)) / n_words if n_words else 0.0,
        )
    return rows


@dataclass(frozen=True, eq=False)
class QueryFeatures:
    """A fitted per-query feature map: any queries of any log as a dense float64 matrix.

    Columns, in order:

    ==========================  ==========================================================
    block                       values
    ==========================  ==========================================================
    ``meta:<name>`` (cat.)      code of the category in the fitted vocabulary (the
                                ``max_categories`` most frequent values); NaN for a missing
                                or unseen value. Declared categorical to LightGBM.
    ``meta:<name>`` (numeric)   the value as float (NaN where missing).
    ``stat:<name>``             simple text statistics (:data:`TEXT_STATISTICS`), on the
                                full text.
    ``text:svd<k>``             the text's hashed word 1-2-grams and char_wb 3-5-grams
                                (binary, l2-normalised per analyzer, first ``max_chars``
                                characters) projected on a truncated-SVD basis fitted on
                                the training queries.
    ``user:<k>``                user-supplied numeric features (``features`` argument).
    ==========================  ==========================================================

    The text goes through an SVD basis rather than the raw hashed columns: LightGBM on many
    (query, arm) rows with hundreds of non-zero hashed n-grams each is slow to fit, and a small
    SVD basis keeps the signal at a fraction of the fitting time.

    Persistence is pickle-free: :meth:`~QueryFeatures.to_dict` gives JSON-ready settings
    (hashing parameters, metadata vocabularies); the SVD basis is a plain float64 array that
    the caller stores with ``numpy.save`` and passes back to :meth:`~QueryFeatures.from_dict`.
    The HashingVectorizers are stateless and are rebuilt from their parameters.

    Attributes:
        text: the text settings.
        components: SVD basis, shape (k, 2 * n_features); ``None`` without text features.
        metadata: the metadata columns used, categorical ones first.
        n_user_features: width of the user-supplied ``features`` matrix (0 = none).
    """

    text: TextSettings
    components: np.ndarray | None
    metadata: tuple[MetadataColumn, ...]
    n_user_features: int

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls,
        log: AttemptLog,
        queries: np.ndarray,
        *,
        text: TextSettings,
        metadata_columns: Sequence[str] | None,
        exclude_metadata: Sequence[str],
        max_categories: int,
        features: np.ndarray | None,
        random_state: int,
        owner: str,
        hashed: sp.csr_matrix | None = None,
    ) -> QueryFeatures:
        """Learn the feature map on the training queries of ``log``.

        Args:
            log: the log.
            queries: training query indices.
            text: text settings.
            metadata_columns: metadata columns to use (``None`` = all of the log's).
            exclude_metadata: columns never used (wins over ``metadata_columns``).
            max_categories: vocabulary size cap of a categorical column.
            features: optional user features, shape (log.n_queries, k).
            random_state: seed of the randomized SVD.
            owner: name used in error messages.
            hashed: the hashed text of ``queries``, if already computed.

        Returns:
            The fitted map.

        Raises:
            ParameterError: for a named metadata column the log lacks, or a ``features``
                matrix of the wrong shape.
        """
        names = _metadata_names(log, metadata_columns, exclude_metadata, owner)
        columns = []
        for name in names:
            values = log.queries.metadata[name][queries]
            categories = None if _is_numeric(values) else _vocabulary(values, max_categories)
            columns.append(MetadataColumn(name, categories))
        columns.sort(key=lambda c: not c.categorical)
        n_user = 0 if features is None else _check_features(log, features, None, owner).shape[1]
        if text.enabled and hashed is None:
            hashed = text.hashed(_texts(log, queries))
        components = _fit_svd(hashed, text.n_components, random_state) if text.enabled else None
        return cls(text, components, tuple(columns), n_user)

    @classmethod
    def fit_transform(
        cls, log: AttemptLog, queries: np.ndarray, **settings: Any
    ) -> tuple[QueryFeatures, np.ndarray]:
        """:meth:`fit`, then :meth:`transform` of the same queries (hashing the text once).

        Args:
            log: the log.
            queries: training query indices.
            **settings: the keyword arguments of :meth:`fit`.

        Returns:
            The fitted map and the features of ``queries``.
        """
        text: TextSettings = settings["text"]
        hashed = text.hashed(_texts(log, queries)) if text.enabled else None
        fitted = cls.fit(log, queries, hashed=hashed, **settings)
        matrix = fitted._transform(log, queries, settings["features"], settings["owner"], hashed)
        return fitted, matrix

    # ------------------------------------------------------------ transform
    @property
    def feature_names(self) -> list[str]:
        """Column names, in order."""
        k = 0 if self.components is None else len(self.components)
        return ([f"meta:{c.name}" for c in self.metadata]
                + ([f"stat:{s}" for s in TEXT_STATISTICS] if self.text.enabled else [])
                + [f"text:svd{i}" for i in range(k)]
                + [f"user:{i}" for i in range(self.n_user_features)])

    @property
    def categorical_indices(self) -> list[int]:
        """Indices of the categorical columns (they come first)."""
        return [i for i, column in enumerate(self.metadata) if column.categorical]

    def transform(
        self,
        log: AttemptLog,
        queries: np.ndarray,
        features: np.ndarray | None = None,
        owner: str = "QueryFeatures.transform",
    ) -> np.ndarray:
        """Features of the given queries, shape (len(queries), len(feature_names)).

        Raises:
            ParameterError: if the log lacks a metadata column used in fitting, or
                ``features`` is missing or of the wrong shape.
        """
        return self._transform(log, queries, features, owner, None)

    def _transform(
        self, log: AttemptLog, queries: np.ndarray, features: np.ndarray | None, owner: str,
        hashed: sp.csr_matrix | None,
    ) -> np.ndarray:
        blocks = [self._metadata_block(log, queries, owner)]
        if self.text.enabled:
            texts = _texts(log, queries)
            blocks.append(text_statistics(texts))
            if self.components is not None:
                hashed = self.text.hashed(texts) if hashed is None else hashed
                blocks.append(np.asarray(hashed @ self.components.T))
        if self.n_user_features:
            blocks.append(_check_features(log, features, self.n_user_features, owner)[queries])
        return np.hstack(blocks).astype(np.float64)

    def _metadata_block(self, log: AttemptLog, queries: np.ndarray, owner: str) -> np.ndarray:
        missing = [c.name for c in self.metadata if c.name not in log.queries.metadata]
        if missing:
            raise ParameterError(owner, "log", f"a log with the metadata columns {missing} "
                                 "the predictor was fitted with",
                                 sorted(log.queries.metadata))
        block = np.empty((len(queries), len(self.metadata)))
        for j, column in enumerate(self.metadata):
            block[:, j] = column.encode(log.queries.metadata[column.name][queries])
        return block

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        """JSON-ready settings (the SVD basis travels separately, see the class docstring)."""
        return {
            "text": {"enabled": self.text.enabled, "n_features": self.text.n_features,
                     "n_components": self.text.n_components, "max_chars": self.text.max_chars,
                     "svd_shape": None if self.components is None
                     else list(self.components.shape),
                     "hashing": self.text.hashing_params(),
                     "statistics": list(TEXT_STATISTICS)},
            "metadata": [{"name": c.name, "kind": "categorical" if c.categorical else "numeric",
                          "categories": None if c.categories is None else list(c.categories)}
                         for c in self.metadata],
            "n_user_features": self.n_user_features,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, data: dict, components: np.ndarray | None) -> QueryFeatures:
        """Rebuild from :meth:`to_dict` output and the stored SVD basis.

        Raises:
            AllocatorError: if the stored hashing or statistics differ from what this
                code computes (the features would silently change).
        """
        text = data["text"]
        settings = TextSettings(bool(text["enabled"]), int(text["n_features"]),
                                int(text["n_components"]), int(text["max_chars"]))
        stored = (text["hashing"], text["statistics"])
        if stored != (settings.hashing_params(), list(TEXT_STATISTICS)):
            raise AllocatorError(
                "the saved text features were computed with other hashing settings or "
                f"statistics than this version computes: saved {stored}; refit the "
                "predictor with this version.")
        columns = tuple(
            MetadataColumn(c["name"], None if c["categories"] is None else tuple(c["categories"]))
            for c in data["metadata"])
        return cls(settings, components, columns, int(data["n_user_features"]))


_HASH_KEYS = ("analyzer", "ngram_range", "n_features", "alternate_sign", "binary", "norm",
              "lowercase")


def _metadata_names(
    log: AttemptLog, requested: Sequence[str] | None, exclude: Sequence[str], owner: str
) -> list[str]:
    available = log.queries.metadata
    if requested is not None:
        unknown = [name for name in requested if name not in available]
        if unknown:
            raise ParameterError(owner, "metadata_columns",
                                 f"names of the log's metadata columns {sorted(available)}",
                                 unknown)
    names = sorted(available) if requested is None else list(dict.fromkeys(requested))
    return [name for name in names if name not in set(exclude)]


def _check_features(
    log: AttemptLog, features: np.ndarray | None, width: int | None, owner: str
) -> np.ndarray:
    expected = (f"a float array of shape ({log.n_queries}, {width}) aligned with the log's "
                "queries" if width else f"a 2-d float array with {log.n_queries} rows")
    if features is None:
        raise ParameterError(owner, "features", expected, None)
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or len(array) != log.n_queries or (width and array.shape[1] != width):
        raise ParameterError(owner, "features", expected, f"shape {array.shape}")
    return array


def _fit_svd(hashed: sp.csr_matrix, n_components: int, random_state: int) -> np.ndarray | None:
    k = min(n_components, hashed.shape[0] - 1, hashed.shape[1] - 1)
    if hashed.nnz == 0 or k < 1:
        return None
    svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=random_state)
    # Small dense factorisations: one BLAS thread is 10x faster than OpenBLAS's default
    # on a busy 2-core machine (and the basis does not depend on the thread count).
    with threadpool_limits(limits=1, user_api="blas"):
        return svd.fit(hashed).components_.astype(np.float64)

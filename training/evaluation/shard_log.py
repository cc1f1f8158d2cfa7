"""A log stored as Parquet shards, evaluated by Ray workers that read their own shards.

``allocator evaluate --ray`` evaluates a :class:`ShardedLog` (a view of the log that
:func:`allocator.training.evaluation.evaluate.evaluate` takes in place of an
:class:`~allocator.logs.table.AttemptLog`): the driver reads an outline and the training
queries' rows, each Ray worker the rows of its own test queries, and the report is the
single process's, byte for byte. :class:`ShardedLog` says what each side reads.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from allocator.envs.pools import ReplayPools
from allocator.logs.schema import KIND_SAMPLE, META_SIMULATED, META_SOURCE
from allocator.logs.table import AttemptLog
from allocator.policies.base import Policy
from allocator.training.evaluation.oracles import QueryOracleFit
from allocator.training.evaluation.replay import FixedNCurves
from allocator.training.evaluation.results import EpisodeResults
from allocator.training.evaluation.shards import check_shard_schemas, shard_files

__all__ = ["OUTLINE_COLUMNS", "READS", "ShardedLog", "ShardedTestReplays", "read_rows"]

#: The columns of the driver's outline: what replay codes and fingerprints (no texts,
#: metadata, attempt ids), and the verifier rows' ``role`` / ``target`` where present.
OUTLINE_COLUMNS = ("query_id", "arm", "kind", "round", "answer", "correct", "cost",
                   "score", "role", "target")

#: ``(rows, columns)`` of every table this process read through :func:`read_rows`.
READS: list[tuple[int, int]] = []


def read_rows(files: list[Path], columns: tuple[str, ...] | None = None,
              query_ids: np.ndarray | None = None) -> pa.Table:
    """The rows of ``files`` (in file order) of the queries ``query_ids`` (None: all),
    with ``columns`` only (those the files have; None: all). Recorded in :data:`READS`."""
    names = None
    if columns is not None:
        present = set(pq.read_schema(files[0]).names)
        names = [name for name in columns if name in present]
    where = None if query_ids is None else pc.field("query_id").cast(pa.string()).isin(
        pa.array([str(q) for q in query_ids], pa.string()))
    table = pa.concat_tables([pq.read_table(path, columns=names, filters=where,
                                            partitioning=None).replace_schema_metadata(None)
                              for path in files])
    READS.append((table.num_rows, table.num_columns))
    return table


@dataclasses.dataclass(frozen=True)
class _Coding:
    """How the whole log codes attempts, for a partial log to code them the same way."""

    source: str
    simulated: bool
    arms: tuple[str, ...]
    answers: np.ndarray
    mean_sample_cost: float
    verify_cost: float


def _partial_log(files: list[Path], query_ids: np.ndarray, coding: _Coding) -> AttemptLog:
    """The log of ``query_ids`` (every column), coded as the whole log codes it."""
    table = read_rows(files, query_ids=query_ids)
    log, _ = AttemptLog.from_arrow(table, source=coding.source,
                                   locate=lambda row: row + 1, simulated=coding.simulated)
    arm_code = np.array([coding.arms.index(a) for a in log.arms], dtype=np.int16)
    position = {answer: k for k, answer in enumerate(coding.answers.tolist())}
    answer_code = np.array([position[a] for a in log.answers.tolist()], dtype=np.int32)
    log.arm = arm_code[log.arm] if len(log.arm) else log.arm
    log.arms = coding.arms
    log.answer = np.where(log.answer >= 0, answer_code[np.maximum(log.answer, 0)]
                          if len(answer_code) else -1, -1).astype(np.int32)
    log.answers = coding.answers
    return log


def _pools(log: AttemptLog, coding: _Coding) -> ReplayPools:
    """The partial log's pools, with the whole log's cost unit and verifier cost."""
    return dataclasses.replace(ReplayPools.from_log(log),
                               mean_sample_cost=coding.mean_sample_cost,
                               log_verify_cost=coding.verify_cost)


class _ShardWorker:
    """A Ray actor: the rows of one shard's test queries, read by itself, and their
    replays (positions ``offset...`` of the whole test set)."""

    def __init__(self, files: list[Path], query_ids: np.ndarray, offset: int,
                 coding: _Coding) -> None:
        self.log = _partial_log(files, query_ids, coding)
        self.pools = _pools(self.log, coding)
        self.offset = offset
        self.settings: dict[int, dict[str, Any]] = {}
        self.evaluators: dict[tuple[int, float], Any] = {}

    def predict(self, predictor: Any) -> np.ndarray:
        return predictor.predict(self.log, np.arange(self.log.n_queries))

    def bundle_prior(self, bundle: str) -> np.ndarray:
        from allocator.training.rl.calibrate import bundle_log_prior

        return bundle_log_prior(bundle, self.log)[0]

    def configure(self, key: int, settings: dict[str, Any]) -> None:
        self.settings[key] = settings

    def _evaluator(self, key: int, lambda_: float) -> Any:
        from allocator.training.evaluation.sharded import ShardEvaluator

        if (key, lambda_) not in self.evaluators:
            self.evaluators[key, lambda_] = ShardEvaluator(
                self.pools, np.arange(self.log.n_queries), offset=self.offset,
                lambda_=lambda_, **self.settings[key])
        return self.evaluators[key, lambda_]

    def run(self, key: int, policy: Policy, lambda_: float) -> EpisodeResults:
        return self._evaluator(key, lambda_).run(policy)

    def curves(self, key: int, arm: int, depth: int) -> FixedNCurves:
        curves = self._evaluator(key, 0.0).fixed_n_curves(arm)
        more = depth + 1 - curves.cost.shape[2]
        pad = ((0, 0), (0, 0), (0, more))
        return FixedNCurves(arm=arm, correct=np.pad(curves.correct, pad, mode="edge"),
                            cost=np.pad(curves.cost, pad, mode="edge"),
                            available=np.pad(curves.available, pad))

    def oracles(self, key: int, lambdas: np.ndarray, max_states: int
                ) -> tuple[dict[str, np.ndarray], QueryOracleFit]:
        from allocator.training.evaluation.oracles import hindsight_values, query_oracle

        evaluator = self._evaluator(key, 0.0)
        cost = self.settings[key]["verify_cost"]
        hindsight = hindsight_values(evaluator, lambdas, verify_cost=cost)
        return hindsight, query_oracle(evaluator, lambdas, verify_cost=cost,
                                       max_states=max_states, hindsight=hindsight)


class ShardedTestReplays:
    """:class:`~allocator.training.evaluation.evaluate.TestReplays` on Ray workers: the same
    results, each worker replaying its own test queries.

    Attributes:
        test, n_orders, seed, prior, verify_cost: as ``TestReplays``'.
    """

    #: Keys of the replays' settings in the workers (one per instance).
    _keys = itertools.count()

    def __init__(self, owner: ShardedLog, test: np.ndarray, *, n_orders: int, seed: int,
                 prior: np.ndarray | None, verify_cost: float) -> None:
        import ray

        self.owner, self.test, self.prior, self.verify_cost = owner, test, prior, verify_cost
        self.n_orders, self.seed = n_orders, seed
        self.workers, self.bounds = owner.workers(test)
        self.key = next(ShardedTestReplays._keys)
        ray.get([worker.configure.remote(self.key, {
            "n_orders": n_orders, "seed": seed, "verify_cost": verify_cost,
            **({} if prior is None else {"prior": prior[test[a:b]]})})
            for worker, (a, b) in zip(self.workers, self.bounds, strict=True)])

    def run(self, policy: Policy, lambda_: float = 0.0) -> EpisodeResults:
        import ray

        parts = ray.get([w.run.remote(self.key, policy, lambda_) for w in self.workers])
        timed = all(part.latency is not None for part in parts)
        return EpisodeResults(policy=parts[0].policy, **{
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in ("correct", "cost", "samples", "exhausted",
                         *(("latency",) if timed else ()))})

    def curves(self, arm: int) -> FixedNCurves:
        import ray

        depth = self.owner.sample_depth(arm)
        parts = ray.get([w.curves.remote(self.key, arm, depth) for w in self.workers])
        return FixedNCurves(arm=arm, **{name: np.concatenate([getattr(p, name) for p in parts])
                                        for name in ("correct", "cost", "available")})

    def oracles(self, lambdas: np.ndarray, max_states: int
                ) -> tuple[dict[str, np.ndarray], QueryOracleFit]:
        import ray

        parts = ray.get([w.oracles.remote(self.key, lambdas, max_states)
                         for w in self.workers])
        hindsight = {name: np.concatenate([h[name] for h, _ in parts])
                     for name in ("correct", "cost", "draws", "exact")}
        fits = [fit for _, fit in parts]
        fit = QueryOracleFit(
            lambdas=fits[0].lambdas,
            **{name: np.concatenate([getattr(f, name) for f in fits])
               for name in ("correct", "cost", "draws", "classes")},
            fallback=np.concatenate([f.fallback + a for f, (a, _) in
                                     zip(fits, self.bounds, strict=True)]).astype(np.int64))
        return hindsight, fit


class ShardedLog:
    """A folder of Parquet shards, as :func:`~allocator.training.evaluation.evaluate.evaluate`
    reads it with Ray workers: the methods of
    :class:`~allocator.training.evaluation.evaluate.LogInProcess`.

    The driver never holds the whole table:

    - the driver reads the **outline**: only the columns :data:`OUTLINE_COLUMNS` (no texts,
      metadata, attempt ids or other columns), from which it takes the query order, the
      arms, the answer vocabulary, the default arm, the verifier's cost, the mean sample
      cost, the log's fingerprint and the difficulty metrics' outcomes;
    - the driver reads the **training queries' rows** (every column: the difficulty
      predictor reads their texts and metadata; the baselines' settings are chosen on their
      pools), as :func:`fit_prior` and the baselines need them;
    - each Ray worker (an actor per shard: a contiguous range of the test queries) reads
      the rows of **its own test queries** from the Parquet files that hold them (the
      outline says which; paths and query ids are sent, not data), and replays every
      policy, the fixed-N curves and the oracles there, seeded as the single process seeds
      them (:class:`~allocator.training.evaluation.sharded.ShardEvaluator`); the driver concatenates
      their episodes in query order.

    Every partial log is coded as the whole log codes it (its arms, its answer vocabulary),
    and its pools carry the whole log's mean sample cost and verifier cost, so the report is
    the single process's, byte for byte (the tests check it). Every table this process reads
    from shards is recorded in :data:`READS` (rows, columns): the tests assert with it that
    the driver never reads every column of the test queries.

    Args:
        path: the shard folder (or one Parquet file).
        n_shards: Ray workers, each with a contiguous range of the test queries.

    Raises:
        LogFormatError: see :func:`~allocator.training.evaluation.shards.check_shard_schemas`, and
            the format's rules on the outline's columns.
        ParameterError: ``n_shards`` is not an integer >= 1.
    """

    def __init__(self, path: str | Path, n_shards: int) -> None:
        from allocator.training.evaluation.evaluate import log_verify_cost
        from allocator.training.evaluation.sharded import shard_bounds

        shard_bounds(1, n_shards)  # checks n_shards
        self.files = shard_files(path)
        check_shard_schemas(self.files)
        self.n_shards = n_shards
        path = Path(path)
        named = b"" if path.is_dir() else (pq.read_schema(path).metadata or {}).get(
            META_SOURCE, b"")
        self.source = named.decode() or str(path)  # as read_log / read_log_shards name it
        self.simulated = all((pq.read_schema(f).metadata or {}).get(META_SIMULATED)
                             == b"true" for f in self.files)
        table = read_rows(self.files, OUTLINE_COLUMNS)
        self.outline, _ = AttemptLog.from_arrow(table, source=str(path),
                                                locate=lambda row: row + 1,
                                                simulated=self.simulated)
        self._file_queries = self._queries_per_file(table)
        del table
        self.n_queries, self.arms = self.outline.n_queries, self.outline.arms
        samples = self.outline.kind == KIND_SAMPLE
        self.coding = _Coding(str(path), self.simulated, self.arms, self.outline.answers,
                              float(self.outline.cost[samples].mean()),
                              log_verify_cost(self.outline))
        self._train: tuple[bytes, AttemptLog, ReplayPools] | None = None
        self._workers: tuple[bytes, list[Any], list[tuple[int, int]]] | None = None

    def _queries_per_file(self, table: pa.Table) -> list[np.ndarray]:
        """The queries (indices) each file holds rows of, from the outline's rows."""
        codes = pc.index_in(table.column("query_id").cast(pa.string()),
                            value_set=pa.array(self.outline.query_ids.tolist(), pa.string()))
        codes = codes.to_numpy(zero_copy_only=False)
        edges = np.cumsum([0] + [pq.ParquetFile(f).metadata.num_rows for f in self.files])
        return [np.unique(codes[a:b]) for a, b in itertools.pairwise(edges)]

    def files_of(self, queries: np.ndarray) -> list[Path]:
        """The files that hold rows of ``queries`` (indices), in file order: the only
        ones a reader of those queries opens."""
        return [path for path, held in zip(self.files, self._file_queries, strict=True)
                if np.intersect1d(held, queries, assume_unique=True).size]

    # ---------------------------------------------------------- from the outline
    def default_arm(self) -> int:
        """The arm with the most attempts."""
        return int(np.argmax(np.bincount(self.outline.arm, minlength=len(self.arms))))

    def verify_cost(self) -> float:
        """:func:`~allocator.envs.pools.log_verify_cost` of the log."""
        return self.coding.verify_cost

    def sample_depth(self, arm: int) -> int:
        """The largest pool of ``arm``'s samples over every query."""
        rows = (self.outline.kind == KIND_SAMPLE) & (self.outline.arm == arm)
        counts = np.bincount(self.outline.attempt_query[rows], minlength=self.n_queries)
        return int(counts.max(initial=0))

    def difficulty(self, prior: np.ndarray, test: np.ndarray) -> dict:
        """The difficulty predictor's metrics on the test queries (their outcomes are
        in the outline)."""
        from allocator.training.difficulty_metrics import evaluate_difficulty

        return evaluate_difficulty(prior[test], self.outline, test)

    def describe(self) -> dict[str, Any]:
        """The report's ``log`` entries (less the cost unit)."""
        return {"source": self.source, "fingerprint": self.outline.fingerprint(),
                "queries": self.n_queries, "attempts": self.outline.n_attempts,
                "arms": list(self.arms), "simulated": self.simulated}

    # ---------------------------------------------------------- the training queries
    def _training_log(self, train: np.ndarray) -> tuple[AttemptLog, ReplayPools]:
        if self._train is None or self._train[0] != train.tobytes():
            log = _partial_log(self.files_of(train), self.outline.query_ids[train],
                               self.coding)
            self._train = (train.tobytes(), log, _pools(log, self.coding))
        return self._train[1], self._train[2]

    def training(self, train: np.ndarray) -> tuple[ReplayPools, np.ndarray]:
        """Pools of the training queries alone (read here), and their indices there."""
        return self._training_log(train)[1], np.arange(len(train))

    def fit_prior(self, train: np.ndarray, test: np.ndarray, seed: int,
                  test_fraction: float) -> np.ndarray:
        """:func:`~allocator.training.evaluation.evaluate.fit_prior`'s prior: fitted here on the
        training queries, predicted by the workers on their test queries."""
        import ray

        from allocator.training.difficulty import cross_fit_predict
        from allocator.training.evaluation.evaluate import (
            PRIOR_FOLDS,
            check_prior_size,
            prior_predictor,
        )

        log, _ = self._training_log(train)
        predictor = prior_predictor(self.simulated, seed)
        check_prior_size(self, len(train), predictor, test_fraction)
        local = np.arange(len(train))
        prior = np.full((self.n_queries, len(self.arms)), 0.5)
        prior[train] = cross_fit_predict(predictor, log, local, n_splits=PRIOR_FOLDS,
                                         random_state=seed)
        predictor.fit(log, local)
        workers, _ = self.workers(test)
        prior[test] = np.concatenate(ray.get([w.predict.remote(predictor) for w in workers]))
        return prior

    # ---------------------------------------------------------- the test queries
    def workers(self, test: np.ndarray) -> tuple[list[Any], list[tuple[int, int]]]:
        """One Ray actor per shard of the test queries (started once), and the shards'
        position ranges."""
        import ray

        from allocator.training.evaluation.sharded import shard_bounds

        test = np.asarray(test, dtype=np.int64)
        if self._workers is None or self._workers[0] != test.tobytes():
            actor = ray.remote(_ShardWorker)
            bounds = shard_bounds(len(test), self.n_shards)
            coding = ray.put(self.coding)
            workers = [actor.remote(self.files_of(test[a:b]),
                                    self.outline.query_ids[test[a:b]], a, coding)
                       for a, b in bounds]
            self._workers = (test.tobytes(), workers, bounds)
        return self._workers[1], self._workers[2]

    def bundle_prior(self, bundle: str, queries: np.ndarray) -> np.ndarray:
        """A bundle's own prior of the test ``queries``, computed by their workers (0.5
        for every other query: never replayed here)."""
        import ray

        workers, _ = self.workers(queries)
        prior = np.full((self.n_queries, len(self.arms)), 0.5)
        prior[queries] = np.concatenate(ray.get([w.bundle_prior.remote(bundle)
                                                 for w in workers]))
        return prior

    def test_replays(self, test: np.ndarray, **settings: Any) -> ShardedTestReplays:
        """The replays on the test queries, by the workers."""
        return ShardedTestReplays(self, np.asarray(test, dtype=np.int64), **settings)

"""``allocator evaluate --ray``'s log view (:class:`ShardedLog`) on a real local Ray:
workers read their own test queries from Parquet shards, the driver only the outline and
the training queries, and the report is the single process's, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from allocator.logs.parquet import log_to_arrow
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.evaluation.evaluate import EvaluationConfig, evaluate, split_queries
from allocator.training.evaluation.report import json_safe
from allocator.training.evaluation.shards import read_log_shards
from tests.training.evaluation.row_shards import write_row_shards

pytestmark = pytest.mark.slow


def report_text(log, config: EvaluationConfig) -> str:
    report, _ = evaluate(log, config)
    return json.dumps(json_safe(report.to_dict()), sort_keys=True)


def test_workers_reading_their_shards_give_the_single_process_report(
        local_ray, tmp_path: Path) -> None:
    """Scores, verifier baselines, refinement rounds and the oracles (every policy of
    the default list), queries spanning files; and what the driver read."""
    from allocator.training.evaluation import shard_log
    from allocator.training.evaluation.shard_log import OUTLINE_COLUMNS, ShardedLog

    log = generate(SyntheticConfig(n_queries=48, with_scores=True, refine_rounds=1), seed=5)
    folder = write_row_shards(log, tmp_path / "shards", 4)
    config = EvaluationConfig(n_orders=2, seed=2, n_bootstrap=50)
    single = report_text(read_log_shards(folder), config)
    shard_log.READS.clear()
    assert report_text(ShardedLog(folder, 3), config) == single

    # The driver read the outline's columns of every row, and every column of the
    # training queries' rows only: never every column of a test query.
    all_columns = len(log_to_arrow(log).column_names)
    train, _ = split_queries(log.n_queries, config.test_fraction, config.seed)
    train_rows = int(np.diff(log.offsets)[train].sum())
    present = len(set(OUTLINE_COLUMNS) & set(log_to_arrow(log).column_names))
    assert all_columns > present
    assert sorted(shard_log.READS) == sorted([(log.n_attempts, present),
                                              (train_rows, all_columns)])
    assert train_rows < log.n_attempts


def test_a_bundle_without_the_predictor_gives_the_single_process_report(
        local_ray, tmp_path: Path) -> None:
    """The learned policy replayed with its bundle's own prior (no predictor fitted
    here), which the workers compute on their queries."""
    from allocator.training.evaluation.shard_log import ShardedLog
    from tests.tiny_policy import export_tiny_bundle

    bundle, _ = export_tiny_bundle(tmp_path / "tiny", n_queries=60)
    folder = write_row_shards(generate(SyntheticConfig(n_queries=60)), tmp_path / "s", 3)
    config = EvaluationConfig(n_orders=2, seed=1, n_bootstrap=50, difficulty=False,
                              bundle=str(bundle), policies=("fixed-n", "esc"))
    single = report_text(read_log_shards(folder), config)
    assert json.loads(single)["policies"]["learned"]
    assert report_text(ShardedLog(folder, 2), config) == single


def test_a_single_parquet_file_gives_the_single_process_report(local_ray,
                                                               tmp_path: Path) -> None:
    """One Parquet file (named in the report by the source its metadata records, as
    ``read_log`` names it), read by workers like a shard folder."""
    from allocator.logs import read_log, write_log
    from allocator.training.evaluation.shard_log import ShardedLog

    log = generate(SyntheticConfig(n_queries=40), seed=6)
    log.source = "runs-2026-12.jsonl"
    path = write_log(log, tmp_path / "log.parquet")
    config = EvaluationConfig(n_orders=2, seed=3, n_bootstrap=50, policies=("fixed-n",))
    single = report_text(read_log(path), config)
    assert json.loads(single)["log"]["source"] == "runs-2026-12.jsonl"
    assert report_text(ShardedLog(path, 2), config) == single

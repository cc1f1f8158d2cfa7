"""A log as a folder of Parquet shards: read as the one log it was cut from, and a shard
with another schema refused with its file and columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from allocator.errors import LogFormatError
from allocator.logs import write_log
from allocator.logs.synthetic import SyntheticConfig, generate
from allocator.training.evaluation.shards import read_log_shards, shard_files


def write_shards(folder: Path, n_queries: int = 30, parts: int = 3) -> Path:
    """The log cut into ``parts`` shards of consecutive queries."""
    log = generate(SyntheticConfig(n_queries=n_queries, with_scores=True), seed=4)
    folder.mkdir()
    for k, queries in enumerate(np.array_split(np.arange(n_queries), parts)):
        write_log(log.select_queries(queries), folder / f"part-{k:03d}.parquet")
    return folder


def test_the_shards_read_back_as_the_log_they_were_cut_from(tmp_path: Path) -> None:
    log = generate(SyntheticConfig(n_queries=30, with_scores=True), seed=4)
    shards = read_log_shards(write_shards(tmp_path / "log"))
    assert shards.fingerprint() == log.fingerprint()
    assert list(shards.query_ids) == list(log.query_ids)
    assert shards.simulated
    assert [p.name for p in shard_files(tmp_path / "log")] == [
        "part-000.parquet", "part-001.parquet", "part-002.parquet"]


def _rewrite(path: Path, change) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)


BAD_SHARDS = [  # (how the second shard is changed, words the message must hold)
    (lambda t: t.append_column("extra", pa.array(np.zeros(t.num_rows))),
     ["extra columns ['extra']"]),
    (lambda t: t.drop_columns(["score"]), ["missing columns ['score']"]),
    (lambda t: t.set_column(t.schema.get_field_index("cost"), "cost",
                            pa.array(np.zeros(t.num_rows, dtype=np.float32))),
     ["other types: cost (double there, float here)"]),
]


@pytest.mark.parametrize(("change", "words"), BAD_SHARDS, ids=["extra", "missing", "type"])
def test_a_shard_with_another_schema_names_its_file(tmp_path: Path, change, words) -> None:
    folder = write_shards(tmp_path / "log")
    _rewrite(folder / "part-001.parquet", change)
    with pytest.raises(LogFormatError) as error:
        read_log_shards(folder)
    message = str(error.value)
    assert "part-001.parquet" in message and "part-000.parquet" in message
    for word in words:
        assert word in message


def test_a_folder_without_shards_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogFormatError, match=r"no \.parquet shard"):
        read_log_shards(tmp_path / "empty")

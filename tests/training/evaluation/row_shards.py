"""A log written as Parquet shards cut inside queries (for the sharded-evaluation tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from allocator.logs.parquet import log_to_arrow
from allocator.logs.table import AttemptLog


def write_row_shards(log: AttemptLog, folder: Path, n_files: int) -> Path:
    """The log's rows cut into ``n_files`` Parquet files at row boundaries that fall
    inside queries: a query's attempts span two files, as a writer cutting by size
    leaves them."""
    folder.mkdir()
    table = log_to_arrow(log)
    edges = np.linspace(0, table.num_rows, n_files + 1).astype(int) + 3
    edges[0], edges[-1] = 0, table.num_rows
    for k in range(n_files):
        pq.write_table(table.slice(edges[k], edges[k + 1] - edges[k]),
                       folder / f"part-{k:03d}.parquet")
    return folder

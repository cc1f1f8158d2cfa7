"""Timed copies of test logs: ``started_at`` / ``ended_at`` added to a log's arrow table
(what latency pricing reads), durations proportional to cost."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from allocator.logs import log_to_arrow
from allocator.logs.table import AttemptLog


def with_timing(log: AttemptLog, *, seed: int = 0, seconds_per_cost: float = 0.5
                ) -> AttemptLog:
    """``log`` with every row timed: it starts at a random second in [0, 10) and lasts
    ``cost * seconds_per_cost`` times a lognormal noise (sigma 0.3), so that durations
    differ between rows of equal cost."""
    rng = np.random.default_rng(seed)
    table = log_to_arrow(log)
    table = table.drop_columns([name for name in ("started_at", "ended_at")
                                if name in table.column_names])
    n = table.num_rows
    started = rng.uniform(0.0, 10.0, n)
    duration = log.cost * seconds_per_cost * rng.lognormal(0.0, 0.3, n)
    table = table.append_column("started_at", pa.array(started, pa.float64()))
    table = table.append_column("ended_at", pa.array(started + duration, pa.float64()))
    timed, _ = AttemptLog.from_arrow(table, simulated=log.simulated, source=log.source)
    return timed

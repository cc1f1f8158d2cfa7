"""The log format: columnar attempt tables grouped by query, their readers and summaries."""

from allocator.logs.parquet import log_to_arrow, read_log, write_log
from allocator.logs.summary import ArmSummary, summarize
from allocator.logs.table import AttemptLog, QueryTable, Rejected

__all__ = [
    "ArmSummary",
    "AttemptLog",
    "QueryTable",
    "Rejected",
    "log_to_arrow",
    "read_log",
    "summarize",
    "write_log",
]

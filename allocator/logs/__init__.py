"""The log format: columnar attempt tables grouped by query, their readers and summaries."""

from allocator.logs.parquet import log_to_arrow, read_log, write_log
from allocator.logs.readers import ColumnMapping, read_attempts, write_rejected
from allocator.logs.summary import ArmSummary, summarize
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate
from allocator.logs.table import AttemptLog, QueryTable, Rejected

__all__ = [
    "ArmSummary",
    "AttemptLog",
    "ColumnMapping",
    "QueryTable",
    "Rejected",
    "SyntheticArm",
    "SyntheticConfig",
    "generate",
    "log_to_arrow",
    "read_attempts",
    "read_log",
    "summarize",
    "write_log",
    "write_rejected",
]

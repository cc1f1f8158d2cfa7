"""The log format's columns, kinds and on-disk conventions (see ``data/README.md``)."""

from __future__ import annotations

from typing import Final

import pyarrow as pa

__all__ = [
    "ATTEMPT_COLUMNS",
    "DEFAULT_ARM",
    "FORMAT_VERSION",
    "KINDS",
    "KIND_REFINE",
    "KIND_SAMPLE",
    "KIND_VERIFY",
    "META_FORMAT_VERSION",
    "META_SIMULATED",
    "META_SOURCE",
    "NO_ANSWER",
    "QUERY_PREFIX",
    "REQUIRED_COLUMNS",
    "TIMING_COLUMNS",
]

FORMAT_VERSION: Final = 1

#: Attempt kinds, in the order of their integer codes.
KINDS: Final = ("sample", "refine", "verify")
KIND_SAMPLE: Final = 0
KIND_REFINE: Final = 1
KIND_VERIFY: Final = 2

#: The arm used when a log has no arm column (a single generator).
DEFAULT_ARM: Final = "default"

#: Answer code of an attempt whose answer could not be extracted; it never wins a vote.
NO_ANSWER: Final = -1

#: Query-level columns are stored beside the attempts, prefixed with this string
#: (``query.text``, ``query.task``...). They must be constant within a query.
QUERY_PREFIX: Final = "query."

#: Canonical attempt columns and their Arrow types on disk.
ATTEMPT_COLUMNS: Final[dict[str, pa.DataType]] = {
    "attempt_id": pa.string(),
    "query_id": pa.string(),
    "arm": pa.string(),
    "kind": pa.string(),
    "round": pa.int32(),
    "answer": pa.string(),
    "correct": pa.float32(),
    "cost": pa.float64(),
    "score": pa.float32(),
}

#: Optional timing columns (see ``data/README.md``, "Timing"): ``started_at`` and
#: ``ended_at`` in seconds on any clock that is consistent within a query (both or
#: neither on a row), ``wave`` (the executor's launch wave, a whole number) and
#: ``parent`` (the attempt id a call waited for). They ride in :attr:`AttemptLog.extra`
#: as float64 (NaN where empty), except ``parent`` (strings).
TIMING_COLUMNS: Final = ("started_at", "ended_at", "wave", "parent")

#: Columns a log must have; the others take documented defaults
#: (arm ``default``, kind ``sample``, round 0, cost 1 per attempt, score missing,
#: attempt ids numbered in file order).
REQUIRED_COLUMNS: Final = ("query_id", "answer", "correct")

# Parquet key-value metadata.
META_FORMAT_VERSION: Final = b"ttc_allocator.format_version"
META_SIMULATED: Final = b"ttc_allocator.simulated"
META_SOURCE: Final = b"ttc_allocator.source"

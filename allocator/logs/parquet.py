"""The log's canonical file: one Parquet file of attempts with query columns beside them.

Query-level columns are stored with the ``query.`` prefix and dictionary-encoded, so
repeating them per attempt costs little on disk. Key-value metadata records the format
version, the source, and whether the log is simulated.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from allocator.errors import LogFormatError, ParameterError
from allocator.logs.schema import (
    FORMAT_VERSION,
    KINDS,
    META_FORMAT_VERSION,
    META_SIMULATED,
    META_SOURCE,
    QUERY_PREFIX,
)
from allocator.logs.table import AttemptLog

__all__ = [
    "check_output_path",
    "log_to_arrow",
    "read_log",
    "write_log",
    "write_parquet_atomically",
]

#: File name suffixes of a Parquet log.
PARQUET_SUFFIXES = (".parquet", ".pq")


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values.tolist(), pa.string())


def log_to_arrow(log: AttemptLog) -> pa.Table:
    """The log as one Arrow table in the on-disk layout."""
    query = log.attempt_query
    answers = pa.DictionaryArray.from_arrays(
        pa.array(log.answer, pa.int32(), mask=log.answer < 0), _strings(log.answers)
    ).cast(pa.string())
    columns: dict[str, pa.Array] = {
        "attempt_id": _strings(log.attempt_id),
        "query_id": pa.DictionaryArray.from_arrays(
            pa.array(query, pa.int32()), _strings(log.query_ids)).cast(pa.string()),
        "arm": pa.DictionaryArray.from_arrays(
            pa.array(log.arm.astype(np.int32)), pa.array(list(log.arms))).cast(pa.string()),
        "kind": pa.DictionaryArray.from_arrays(
            pa.array(log.kind.astype(np.int32)), pa.array(list(KINDS))).cast(pa.string()),
        "round": pa.array(log.round, pa.int32()),
        "answer": answers,
        "correct": pa.array(log.correct, pa.float32()),
        "cost": pa.array(log.cost, pa.float64()),
        "score": pa.array(log.score, pa.float32(), from_pandas=True),
    }
    for name, values in log.extra.items():
        columns[name] = pa.array(values, from_pandas=True)
    per_query = {"text": log.queries.text, **log.queries.metadata}
    for name, values in per_query.items():
        columns[QUERY_PREFIX + name] = pa.array(values, from_pandas=True).take(pa.array(query))
    metadata = {
        META_FORMAT_VERSION: str(FORMAT_VERSION).encode(),
        META_SIMULATED: b"true" if log.simulated else b"false",
        META_SOURCE: (log.source or "").encode(),
    }
    return pa.table(columns).replace_schema_metadata(metadata)


def check_output_path(
    path: str | os.PathLike[str],
    *,
    owner: str = "write_log",
    parameter: str = "path",
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    parquet_name: bool = False,
) -> Path:
    """Refuse, before any work, an output the log cannot be written to.

    Args:
        path: where the log will go.
        owner: who asks (for the error), e.g. ``"allocator ingest"``.
        parameter: the parameter that names the output, e.g. ``"--output"``.
        inputs: files being read: writing over one would replace the source.
        parquet_name: require a Parquet suffix (``.parquet``/``.pq``), so that a log is
            never written under a ``.csv`` or ``.jsonl`` name.

    Raises:
        ParameterError: a folder, a path in a missing folder, an input, or a wrong suffix.
    """
    path = Path(path)
    given = str(path)
    if path.is_dir():
        raise ParameterError(owner, parameter, "a file path, but it is a folder: name the "
                             f"log file in it, e.g. {path / 'log.parquet'}", given)
    folder = path.parent
    if not folder.is_dir():
        raise ParameterError(owner, parameter, f"a path in an existing folder, but folder "
                             f"{str(folder)!r} does not exist: create it first "
                             f"(mkdir -p {folder})", given)
    for source in inputs:
        if source is not None and path.exists() and os.path.samefile(path, source):
            raise ParameterError(owner, parameter, "a new file, but it is the input: writing "
                                 "there would replace the source; write the log elsewhere",
                                 given)
    if parquet_name and path.suffix.lower() not in PARQUET_SUFFIXES:
        raise ParameterError(owner, parameter, f"a .parquet file name, but it ends in "
                             f"{path.suffix or '(no suffix)'!r}: the log is written as "
                             f"Parquet, name it {path.with_suffix('.parquet').name}", given)
    return path


def write_parquet_atomically(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write a table as Parquet to a temporary file, then rename it into place.

    A crash mid-write never leaves a truncated file where a good one stood. The
    temporary file has a unique name in the same folder, so that writers of one path at
    once never share it: the last rename wins, and every reader sees one whole file.

    Raises:
        ParameterError: the path is a folder or its folder does not exist.
        LogFormatError: the file cannot be written (disk full, no permission).
    """
    path = check_output_path(path)
    temporary: Path | None = None
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=".partial")
        os.close(handle)
        temporary = Path(name)
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, path)
    except OSError as error:
        raise LogFormatError(
            f"cannot write the log ({error.strerror or error}).", source=str(path),
            fix="free disk space, or check that the folder is writable; the file that was "
            "there (if any) is untouched.") from error
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return path


def write_log(log: AttemptLog, path: str | os.PathLike[str]) -> Path:
    """Write the log atomically (see :func:`write_parquet_atomically`)."""
    return write_parquet_atomically(log_to_arrow(log), path)


#: Magic bytes at both ends of every Parquet file.
_PARQUET_MAGIC = b"PAR1"


def _check_log_path(path: Path) -> None:
    """Refuse, with the likely fix, a path that is missing, a folder, or not Parquet at all
    (a raw JSONL or CSV file that was never ingested)."""
    if not path.exists():
        raise LogFormatError("file not found.", source=str(path),
                             fix="check the path; a log is the Parquet file written by "
                                 "`allocator ingest`.")
    if path.is_dir():
        raise LogFormatError("this is a folder, not a log file.", source=str(path),
                             fix="pass the Parquet file written by `allocator ingest`.")
    with path.open("rb") as handle:
        head = handle.read(len(_PARQUET_MAGIC))
    if head != _PARQUET_MAGIC:
        raise LogFormatError(
            "this is not a Parquet log (it does not start with Parquet's magic bytes).",
            source=str(path),
            fix=f"turn raw runs into a log first: `allocator ingest {path.name} -o "
                f"{path.with_suffix('.parquet').name} --query-col ... --answer-col ... "
                "--correct-col ...` (`--format NAME` for a known tool's logs: see `allocator "
                "formats`).")


def read_log(path: str | os.PathLike[str]) -> AttemptLog:
    """Read a log written by :func:`write_log` (or any Parquet file with canonical columns).

    Raises:
        LogFormatError: if the file is unreadable, truncated, of a newer format version,
            or breaks the format's rules.
    """
    path = Path(path)
    _check_log_path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise LogFormatError(
            f"cannot read Parquet ({error}).", source=str(path),
            fix="check the file is a complete Parquet file (a truncated copy cannot be read).",
        ) from error
    metadata = table.schema.metadata or {}
    version = int(metadata.get(META_FORMAT_VERSION, b"1"))
    if version > FORMAT_VERSION:
        raise LogFormatError(
            f"log format version {version} is newer than this ttc-allocator reads "
            f"({FORMAT_VERSION}).", source=str(path), fix="upgrade ttc-allocator.",
        )
    simulated = metadata.get(META_SIMULATED, b"false") == b"true"
    log, _ = AttemptLog.from_arrow(
        table, source=str(path), locate=lambda row: row + 1, simulated=simulated
    )
    source = metadata.get(META_SOURCE, b"").decode()
    log.source = source or str(path)
    return log

"""A log stored as a folder of Parquet shards (``part-000.parquet``, ...): one log, the
shards' rows in file-name order.

Every shard must have the first shard's columns and types (a shard written by another
tool or version is refused before anything is read, naming the file and the columns that
differ), and a format version this package reads. A single Parquet file is read as
:func:`allocator.logs.read_log` reads it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from allocator.errors import LogFormatError
from allocator.logs import read_log
from allocator.logs.schema import FORMAT_VERSION, META_FORMAT_VERSION, META_SIMULATED
from allocator.logs.table import AttemptLog

__all__ = ["check_shard_schemas", "read_log_shards", "shard_files"]


def shard_files(path: str | Path) -> list[Path]:
    """The Parquet files of a shard folder, in name order (a file: itself).

    Raises:
        LogFormatError: the folder holds no ``*.parquet`` file.
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file())
    if not files:
        raise LogFormatError("this folder holds no .parquet shard.", source=str(path),
                             fix="pass a log file, or a folder of Parquet shards written "
                                 "by `allocator ingest` (one per part of the log).")
    return files


def _describe(schema: pa.Schema) -> dict[str, str]:
    return {field.name: str(field.type) for field in schema}


def check_shard_schemas(files: list[Path]) -> pa.Schema:
    """The shards' common schema (without metadata).

    Raises:
        LogFormatError: a shard that is not Parquet, of a newer format version, or whose
            columns or types differ from the first shard's (the message names the file
            and the columns).
    """
    first: pa.Schema | None = None
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid) as error:
            raise LogFormatError(f"cannot read this shard's Parquet schema ({error}).",
                                 source=str(path), fix="check the file is a complete "
                                 "Parquet file.") from None
        version = int((schema.metadata or {}).get(META_FORMAT_VERSION, b"1"))
        if version > FORMAT_VERSION:
            raise LogFormatError(f"log format version {version} is newer than this "
                                 f"ttc-allocator reads ({FORMAT_VERSION}).", source=str(path),
                                 fix="upgrade ttc-allocator.")
        schema = schema.remove_metadata()
        if first is None:
            first = schema
            continue
        if not schema.equals(first):
            raise LogFormatError(_difference(_describe(first), _describe(schema), files[0]),
                                 source=str(path), fix="rewrite the shard with the same "
                                 "columns as the others (e.g. with `allocator ingest`).")
    assert first is not None
    return first


def _difference(expected: dict[str, str], found: dict[str, str], reference: Path) -> str:
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    changed = [f"{name} ({expected[name]} there, {found[name]} here)" for name in expected
               if name in found and found[name] != expected[name]]
    parts = [f"missing columns {missing}" if missing else "",
             f"extra columns {extra}" if extra else "",
             f"other types: {', '.join(changed)}" if changed else "",
             "" if missing or extra or changed else "the columns come in another order"]
    return (f"this shard has another schema than the first shard {reference.name}: "
            + "; ".join(part for part in parts if part) + ".")


def read_log_shards(path: str | Path) -> AttemptLog:
    """Read a log file, or a folder of shards as one log (rows in file-name order).

    Raises:
        LogFormatError: see :func:`shard_files`, :func:`check_shard_schemas`, and the
            format's rules (:meth:`AttemptLog.from_arrow`).
    """
    path = Path(path)
    if not path.is_dir():
        return read_log(path)
    files = shard_files(path)
    check_shard_schemas(files)
    tables = [pq.read_table(file) for file in files]
    simulated = all((table.schema.metadata or {}).get(META_SIMULATED) == b"true"
                    for table in tables)
    table = pa.concat_tables([table.replace_schema_metadata(None) for table in tables])
    log, _ = AttemptLog.from_arrow(table, source=str(path), locate=lambda row: row + 1,
                                   simulated=simulated)
    return log

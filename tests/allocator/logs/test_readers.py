"""Generic readers: round trips with column mappings, and every kind of bad input.

Every bad-input case asserts the error type and that the message names the file, the
line (or column) and carries a fix hint.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from allocator.errors import LogFormatError, ParameterError
from allocator.logs import AttemptLog, _formats, read_log, write_log
from allocator.logs.readers import ColumnMapping, infer_format, read_attempts, write_rejected

# The user's column names, and the mapping that reads them.
USER = {
    "query_id": "problem", "arm": "model", "kind": "kind", "round": "step", "answer": "pred",
    "correct": "is_correct", "cost": "tokens", "score": "judge", "attempt_id": "uid",
    "text": "question",
}
MAPPING = ColumnMapping(**USER, metadata=("topic",))
FORMATS = ("jsonl", "csv", "parquet")
# Line of data row 0 as a user sees it: JSONL line 1, CSV line 2 (after the header),
# Parquet row 1.
FIRST_LINE = {"jsonl": 1, "csv": 2, "parquet": 1}


def make_rows(n_queries: int = 4, per_query: int = 3) -> list[dict[str, object]]:
    """Canonical rows (with ``text`` and ``topic``), interleaved across queries."""
    rows = []
    for i in range(per_query):
        for q in range(n_queries):
            rows.append({
                "query_id": f"q{q}", "arm": "small" if i % 2 else "large", "kind": "sample",
                "round": 0, "answer": str((q + i) % 3), "correct": float((q + i) % 3 == 0),
                "cost": 10.0 + q + 0.25 * i, "score": 0.5 + 0.125 * (i % 3),
                "attempt_id": f"a{q}-{i}", "text": f"What is {q} + {q}?", "topic": f"t{q % 2}",
            })
    return rows


def rename(rows: list[dict[str, object]], names: dict[str, str]) -> list[dict[str, object]]:
    return [{names.get(k, k): v for k, v in row.items()} for row in rows]


def write(rows: list[dict[str, object]], path: Path, fmt: str) -> Path:
    """Write rows as JSONL, CSV or Parquet (``.gz`` in the name gzips JSONL/CSV)."""
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if fmt == "jsonl":
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = out.getvalue()
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def expected_log(rows: list[dict[str, object]]) -> AttemptLog:
    table = pa.Table.from_pylist(rename(rows, {"text": "query.text", "topic": "query.topic"}))
    return AttemptLog.from_arrow(table)[0]


def assert_error(error: LogFormatError, path: Path, *, line: int | None = None,
                 column: str | None = None, hint: str = "") -> None:
    message = str(error)
    assert str(path) in message
    if line is not None:
        assert error.line == line, message
        assert f"line {line}" in message
    if column is not None:
        assert error.column == column, message
        assert repr(column) in message
    assert "Fix:" in message and error.fix
    assert hint.lower() in message.lower(), message


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.ndjson", "a.csv", "a.csv.gz",
                                  "a.parquet"])
def test_round_trip_with_mapping(tmp_path: Path, name: str) -> None:
    rows = make_rows()
    path = write(rename(rows, USER), tmp_path / name, infer_format(name))
    log, rejected = read_attempts(path, mapping=MAPPING)
    want = expected_log(rows)
    assert len(rejected) == 0
    assert log.fingerprint() == want.fingerprint()
    assert list(log.query_ids) == ["q0", "q1", "q2", "q3"]
    assert list(log.queries.text) == [f"What is {q} + {q}?" for q in range(4)]
    assert list(log.queries.metadata["topic"]) == ["t0", "t1", "t0", "t1"]
    assert sorted(log.attempt_id) == sorted(r["attempt_id"] for r in rows)
    assert log.source == str(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_canonical_names_need_no_mapping(tmp_path: Path, fmt: str) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("text", "topic")} for r in make_rows()]
    log, _ = read_attempts(write(rows, tmp_path / f"a.{fmt}", fmt))
    assert log.fingerprint() == expected_log(rows).fingerprint()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_ids_and_answers_stay_text(tmp_path: Path, fmt: str) -> None:
    """'007' stays '007' (never the number 7), and empty answers do not vote."""
    rows = [{"query_id": "007", "answer": "007", "correct": 1},
            {"query_id": "007", "answer": "", "correct": 0},
            {"query_id": "7", "answer": "7.0", "correct": 1}]
    log, _ = read_attempts(write(rows, tmp_path / f"a.{fmt}", fmt))
    assert list(log.query_ids) == ["007", "7"]
    assert sorted(log.answers) == ["007", "7.0"]
    assert (log.answer == -1).sum() == 1


def test_explicit_format_overrides_suffix(tmp_path: Path) -> None:
    rows = make_rows()
    path = write(rows, tmp_path / "export.txt", "jsonl")
    with pytest.raises(LogFormatError, match="file_format"):
        read_attempts(path)
    log, _ = read_attempts(path, file_format="jsonl")
    assert log.n_attempts == len(rows)
    with pytest.raises(ParameterError, match="file_format"):
        read_attempts(path, file_format="xlsx")


def test_gzip_detected_by_content(tmp_path: Path) -> None:
    rows = make_rows()
    path = tmp_path / "a.jsonl"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    assert read_attempts(path)[0].n_attempts == len(rows)


def test_query_table_file(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("text", "topic")} for r in make_rows()]
    attempts = write(rows, tmp_path / "a.jsonl", "jsonl")
    table = [{"id": f"q{q}", "question": f"Q{q}", "level": q * 10} for q in (3, 1, 0, 2)]
    queries = write(table, tmp_path / "q.csv", "csv")
    mapping = ColumnMapping(query_id="query_id", text="question")
    # The query table uses 'id'; its id column follows the mapping too.
    with pytest.raises(LogFormatError) as caught:
        read_attempts(attempts, queries=queries, mapping=mapping)
    assert_error(caught.value, queries, column="query_id", hint="columns present")
    queries = write(rename(table, {"id": "query_id"}), tmp_path / "q.csv", "csv")
    log, _ = read_attempts(attempts, queries=queries, mapping=mapping)
    assert list(log.query_ids) == ["q3", "q1", "q0", "q2"]  # the query table's order
    assert list(log.queries.text) == ["Q3", "Q1", "Q0", "Q2"]
    assert list(log.queries.metadata["level"]) == [30, 10, 0, 20]
    for q, qid in enumerate(log.query_ids):
        pool = log.attempt_id[log.pool(q)]
        assert sorted(pool) == sorted(r["attempt_id"] for r in rows if r["query_id"] == qid)


# ------------------------------------------------------------------------ bad input
BadCase = Callable[[list[dict[str, object]]], None]


def _bad_correct(rows: list[dict[str, object]]) -> None:
    for row in rows:
        row["correct"] = str(row["correct"] == 1.0).lower()
    rows[4]["correct"] = "yes"


def _duplicate_id(rows: list[dict[str, object]]) -> None:
    rows[5]["attempt_id"] = rows[1]["attempt_id"]


def _nan_cost(rows: list[dict[str, object]]) -> None:
    rows[3]["cost"] = math.nan


def _empty_query(rows: list[dict[str, object]]) -> None:
    rows[2]["query_id"] = None


# name -> (mutation, bad row index, column, hint)
ROW_CASES: dict[str, tuple[BadCase, int, str, str]] = {
    "correct=yes": (_bad_correct, 4, "correct", "number (or true/false)"),
    "duplicate attempt id": (_duplicate_id, 5, "attempt_id", "unique id"),
    "NaN cost": (_nan_cost, 3, "cost", "use 0 for free attempts"),
    "empty query id": (_empty_query, 2, "query_id", "give every attempt a query id"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_row_names_file_line_column_and_fix(tmp_path: Path, fmt: str, case: str) -> None:
    mutate, row, column, hint = ROW_CASES[case]
    rows = make_rows()
    mutate(rows)
    path = write(rename(rows, USER), tmp_path / f"bad.{fmt}", fmt)
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path, mapping=MAPPING)
    assert_error(caught.value, path, line=FIRST_LINE[fmt] + row, column=USER[column], hint=hint)
    assert f"read as {column!r}" in str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_names_where_first_seen(tmp_path: Path, fmt: str) -> None:
    rows = make_rows()
    _duplicate_id(rows)
    path = write(rows, tmp_path / f"dup.{fmt}", fmt)
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert f"first seen at line {FIRST_LINE[fmt] + 1}" in str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column(tmp_path: Path, fmt: str) -> None:
    rows = [{k: v for k, v in r.items() if k != "correct"} for r in make_rows()]
    path = write(rows, tmp_path / f"a.{fmt}", fmt)
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, column="correct", hint="--correct-col")
    assert "columns present" in str(caught.value) and "'answer'" in str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mapped_column_absent(tmp_path: Path, fmt: str) -> None:
    path = write(make_rows(), tmp_path / f"a.{fmt}", fmt)
    for mapping, column in [(ColumnMapping(cost="n_tokens"), "n_tokens"),
                            (ColumnMapping(metadata=("level",)), "level")]:
        with pytest.raises(LogFormatError) as caught:
            read_attempts(path, mapping=mapping)
        assert_error(caught.value, path, column=column, hint="")
        assert "columns present" in str(caught.value) and "'cost'" in str(caught.value)


def test_unknown_mapping_target() -> None:
    with pytest.raises(LogFormatError) as caught:
        ColumnMapping.from_dict({"query": "problem"}, source="runs.csv")
    assert "'query'" in str(caught.value) and "runs.csv" in str(caught.value)
    assert "query_id" in str(caught.value) and caught.value.fix
    mapping = ColumnMapping.from_dict({"query_id": "problem", "metadata": ["topic"]})
    assert mapping.query_id == "problem" and mapping.metadata == ("topic",)
    with pytest.raises(ParameterError, match="correct"):
        ColumnMapping(correct=None)  # type: ignore[arg-type]


def test_column_with_canonical_name_but_not_mapped(tmp_path: Path) -> None:
    rows = make_rows()
    for row in rows:
        row["judge"] = row["score"]
    path = write(rows, tmp_path / "a.jsonl", "jsonl")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path, mapping=ColumnMapping(score="judge"))
    assert_error(caught.value, path, column="score", hint="rename or drop")
    log, _ = read_attempts(path)  # unmapped 'judge' rides along as an extra column
    assert "judge" in log.extra and np.array_equal(log.extra["judge"], log.score)


def test_per_attempt_text_is_refused_with_user_terms(tmp_path: Path) -> None:
    rows = make_rows()
    rows[6]["text"] = "something else"
    path = write(rows, tmp_path / "a.jsonl", "jsonl")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=7, column="text", hint="text=None")
    log, _ = read_attempts(path, mapping=ColumnMapping(text=None))
    assert "text" in log.extra and all(t is None for t in log.queries.text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"empty.{fmt}"
    path.write_bytes(b"")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, hint="empty")


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_without_rows(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"a.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(make_rows()).slice(0, 0), path)
    elif fmt == "csv":
        path.write_text("query_id,answer,correct\n")
    else:
        path.write_text("\n\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, hint="")
    assert "no rows" in str(caught.value) or "empty" in str(caught.value)


def test_jsonl_invalid_line_is_found_exactly(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in make_rows()]
    lines[7] = lines[7][:-1] + ",}"
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=8, hint="one JSON object per line")
    assert "invalid JSON" in str(caught.value)


def test_jsonl_not_an_object(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in make_rows()]
    lines[2] = "[1, 2]"
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=3, hint="one JSON object per line")
    assert "expected a JSON object" in str(caught.value)


def test_jsonl_blank_lines_keep_physical_line_numbers(tmp_path: Path) -> None:
    rows = make_rows()
    _nan_cost(rows)  # row 3
    lines = [json.dumps(r) for r in rows]
    path = tmp_path / "a.jsonl"
    path.write_text("\n" + lines[0] + "\n\n  \n" + "\n".join(lines[1:]) + "\n\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=7, column="cost")  # 3 blank lines before row 1


def test_jsonl_last_line_cut_mid_object(tmp_path: Path) -> None:
    text = "".join(json.dumps(r) + "\n" for r in make_rows())
    path = tmp_path / "a.jsonl"
    path.write_text(text[: len(text) - 30])
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=12, hint="truncated")
    log, rejected = read_attempts(path, skip_invalid=True)
    assert log.n_attempts == 11 and list(rejected.rows.column("_line").to_pylist()) == [12]


@pytest.mark.parametrize("name", ["a.jsonl.gz", "a.csv.gz"])
def test_gzip_cut_mid_stream(tmp_path: Path, name: str) -> None:
    path = write(make_rows(40, 5), tmp_path / name, infer_format(name))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, hint="truncated")


def test_parquet_truncated(tmp_path: Path) -> None:
    path = write(make_rows(), tmp_path / "a.parquet", "parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, hint="truncated")


def test_csv_record_with_missing_fields(tmp_path: Path) -> None:
    path = write(make_rows(), tmp_path / "a.csv", "csv")
    lines = path.read_text().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:4])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=6, hint="quote values")
    assert "expected 11 fields" in str(caught.value)


def test_csv_cut_mid_record(tmp_path: Path) -> None:
    path = write(make_rows(), tmp_path / "a.csv", "csv")
    text = path.read_text()
    path.write_text(text[: len(text) - 50])
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=13, hint="truncated")


def test_csv_quote_never_closed(tmp_path: Path) -> None:
    rows = make_rows()
    path = write(rows, tmp_path / "a.csv", "csv")
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace("What", '"What', 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=5, hint="close the quote")


def test_csv_values_spanning_lines_keep_line_numbers(tmp_path: Path) -> None:
    rows = make_rows()
    rows[1]["answer"] = "two\nlines"
    rows[2]["answer"] = "three\nmore\nlines"
    _nan_cost(rows)  # row 3 starts on line 2 + 3 + 1 + 2 = 8
    path = write(rows, tmp_path / "a.csv", "csv")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=8, column="cost")


def test_csv_header_repeats_a_name(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("query_id,answer,correct,answer\nq,1,1,2\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=1, column="answer", hint="distinct name")


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_pool_names_the_query_table(tmp_path: Path, fmt: str) -> None:
    rows = make_rows()
    attempts = write(rows, tmp_path / "a.jsonl", "jsonl")
    table = [{"query_id": q} for q in ("q0", "q1", "q9", "q2", "q3")]
    queries = write(table, tmp_path / f"q.{fmt}", fmt)
    with pytest.raises(LogFormatError) as caught:
        read_attempts(attempts, queries=queries)
    assert_error(caught.value, queries, line=FIRST_LINE[fmt] + 2, column="query_id",
                 hint="remove it from the query table")
    assert "'q9'" in str(caught.value) and "empty pool" in str(caught.value)


def test_attempt_of_unknown_query_and_duplicate_query(tmp_path: Path) -> None:
    attempts = write(make_rows(), tmp_path / "a.jsonl", "jsonl")
    queries = write([{"query_id": q} for q in ("q0", "q1", "q3")], tmp_path / "q.csv", "csv")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(attempts, queries=queries)
    assert_error(caught.value, attempts, line=3, column="query_id", hint="add the query")
    log, rejected = read_attempts(attempts, queries=queries, skip_invalid=True)
    assert log.n_queries == 3 and len(rejected) == 3
    assert set(rejected.rows.column("query_id").to_pylist()) == {"q2"}
    queries = write([{"query_id": q} for q in ("q0", "q1", "q2", "q1", "q3")],
                    tmp_path / "q.csv", "csv")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(attempts, queries=queries)
    assert_error(caught.value, queries, line=5, column="query_id", hint="one row per query")


def test_jsonl_problems_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slow path parses a few lines at a time: line numbers stay exact across chunk
    boundaries, blank lines included, and column types that differ between chunks meet."""
    monkeypatch.setattr(_formats, "_CHUNK_BYTES", 300)
    rows = make_rows(8, 6)
    for row in rows[30:]:
        row["correct"] = bool(row["correct"])  # later chunks hold booleans, not numbers
        row["answer"] = int(row["answer"])  # and numbers, not text
    lines = [json.dumps(r) for r in rows]
    lines[40] = lines[40].replace('"cost": ', '"cost": "free", "was": ')
    text = "\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]) + "\n"
    path = tmp_path / "a.jsonl"
    path.write_text(text)
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=42, column="cost")  # row 40, after one blank line
    log, rejected = read_attempts(path, skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [42]
    assert log.n_attempts == len(rows) - 1
    broken = text.splitlines()
    broken[10] = broken[10][:-2]
    broken[33] = "not json"
    path.write_text("\n".join(broken) + "\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=11, hint="one JSON object per line")
    log, rejected = read_attempts(path, skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [11, 34, 42]
    good = [r for i, r in enumerate(rows) if i not in (10, 32, 40)]
    assert sorted(log.attempt_id) == sorted(r["attempt_id"] for r in good)
    assert sorted(log.answers) == ["0", "1", "2"]


def test_jsonl_two_objects_on_a_line(tmp_path: Path) -> None:
    rows = make_rows()
    _nan_cost(rows)  # row 3, on line 3 once rows 1 and 2 share line 2
    lines = [json.dumps(r) for r in rows]
    path = tmp_path / "a.jsonl"
    path.write_text(lines[0] + "\n" + lines[1] + " " + lines[2] + "\n" + "\n".join(lines[3:]))
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=2, hint="no two objects on one line")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_byte_order_mark_is_ignored(tmp_path: Path, fmt: str) -> None:
    rows = make_rows()
    path = write(rows, tmp_path / f"a.{fmt}", fmt)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_attempts(path)[0].fingerprint() == expected_log(rows).fingerprint()


def test_csv_repeated_short_records_are_all_found(tmp_path: Path) -> None:
    path = write(make_rows(), tmp_path / "a.csv", "csv")
    lines = path.read_text().splitlines()
    lines[3] = lines[9] = "q1,short"
    lines[5] = "q1,short,"  # also short, but a different text
    path.write_text("\n".join(lines))  # and no final newline
    log, rejected = read_attempts(path, skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [4, 6, 10]
    assert rejected.rows.column("_raw").to_pylist() == ["q1,short", "q1,short,", "q1,short"]
    assert log.n_attempts == 12 - 3


# --------------------------------------------------------------------- skip_invalid
@pytest.mark.parametrize("fmt", FORMATS)
def test_skip_invalid_sets_rows_aside(tmp_path: Path, fmt: str) -> None:
    rows = make_rows()
    _bad_correct(rows)  # row 4
    _nan_cost(rows)  # row 3
    _duplicate_id(rows)  # row 5
    path = write(rename(rows, USER), tmp_path / f"a.{fmt}", fmt)
    log, rejected = read_attempts(path, mapping=MAPPING, skip_invalid=True)
    bad_rows = [3, 4, 5]
    assert len(rejected) == 3
    assert rejected.rows.column("_line").to_pylist() == [FIRST_LINE[fmt] + r for r in bad_rows]
    assert rejected.rows.column(USER["attempt_id"]).to_pylist() == [
        rows[r]["attempt_id"] for r in bad_rows]
    reasons = rejected.rows.column("_reason").to_pylist()
    assert reasons[0].startswith("cost") and reasons[1].startswith("correct")
    good = [r for i, r in enumerate(rows) if i not in bad_rows]
    assert sorted(log.attempt_id) == sorted(r["attempt_id"] for r in good)
    side = write_rejected(rejected, tmp_path / "rejected.jsonl")
    written = [json.loads(line) for line in side.read_text().splitlines()]
    assert [w["_line"] for w in written] == [FIRST_LINE[fmt] + r for r in bad_rows]
    assert written[0][USER["cost"]] == "nan"  # still valid JSON
    assert {USER["query_id"], "_reason"} <= set(written[1])


def test_skip_invalid_sets_bad_json_lines_aside(tmp_path: Path) -> None:
    rows = make_rows()
    _nan_cost(rows)
    lines = [json.dumps(r) for r in rows]
    lines[6] = "{not json"
    lines[9] = '"a string"'
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    log, rejected = read_attempts(path, skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [4, 7, 10]
    assert rejected.rows.column("_raw").to_pylist() == [None, "{not json", '"a string"']
    assert log.n_attempts == len(rows) - 3
    side = write_rejected(rejected, tmp_path / "rejected.jsonl")
    assert len(side.read_text().splitlines()) == 3


def test_skip_invalid_sets_short_csv_records_aside(tmp_path: Path) -> None:
    rows = make_rows()
    rows[1]["answer"] = "spans\ntwo lines"  # row 1 takes lines 3-4
    _nan_cost(rows)  # row 3: line 6
    path = write(rows, tmp_path / "a.csv", "csv")
    text = path.read_text().splitlines()
    assert text[7].startswith("q1,")  # row 5, line 8
    text[7] = "q1,short"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    assert_error(caught.value, path, line=8, hint="quote values")
    log, rejected = read_attempts(path, skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [6, 8]
    assert rejected.rows.column("_raw").to_pylist() == [None, "q1,short"]
    assert rejected.rows.column("attempt_id").to_pylist() == [rows[3]["attempt_id"], None]
    assert sorted(log.attempt_id) == sorted(
        r["attempt_id"] for i, r in enumerate(rows) if i not in (3, 5))


def test_skip_invalid_drops_queries_whose_attempts_were_all_rejected(tmp_path: Path) -> None:
    rows = make_rows()
    for row in rows:
        if row["query_id"] == "q2":
            row["cost"] = -1.0
    attempts = write(rows, tmp_path / "a.jsonl", "jsonl")
    queries = write([{"query_id": f"q{q}"} for q in range(4)], tmp_path / "q.jsonl", "jsonl")
    log, rejected = read_attempts(attempts, queries=queries, skip_invalid=True)
    assert list(log.query_ids) == ["q0", "q1", "q3"]
    reasons = rejected.rows.column("_reason").to_pylist()
    assert len(rejected) == 4 and "empty" in reasons[-1] and str(queries) in reasons[-1]


# ----------------------------------------------------------------- atomic output
def test_failing_ingest_leaves_existing_output_untouched(tmp_path: Path) -> None:
    good = write(make_rows(), tmp_path / "a.jsonl", "jsonl")
    out = write_log(read_attempts(good)[0], tmp_path / "log.parquet")
    before = out.read_bytes()
    bad_rows = make_rows()
    _bad_correct(bad_rows)
    bad = write(bad_rows, tmp_path / "b.jsonl", "jsonl")

    def ingest(source: Path) -> None:
        log, _ = read_attempts(source)
        write_log(log, out)

    with pytest.raises(LogFormatError):
        ingest(bad)
    assert out.read_bytes() == before
    # A write that fails midway (an extra column Arrow cannot store) also leaves it.
    log = read_attempts(good)[0]
    log.extra["broken"] = np.array([object()] * log.n_attempts, dtype=object)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_log(log, out)
    assert out.read_bytes() == before
    assert read_log(out).fingerprint() == read_attempts(good)[0].fingerprint()


def test_reads_own_parquet_with_simulated_flag(tmp_path: Path) -> None:
    log = expected_log(make_rows())
    log.simulated = True
    path = write_log(log, tmp_path / "log.parquet")
    again, _ = read_attempts(path)
    assert again.simulated and again.fingerprint() == log.fingerprint()
    assert list(again.queries.text) == list(log.queries.text)


@pytest.mark.parametrize(("name", "make", "problem", "hint"), [
    ("missing.parquet", lambda path: None, "file not found", "allocator ingest"),
    ("folder.parquet", lambda path: path.mkdir(), "folder, not a log file", "allocator ingest"),
    ("runs.jsonl", lambda path: path.write_text('{"query_id": "q", "answer": "1"}\n'),
     "not a Parquet log", "allocator ingest runs.jsonl -o runs.parquet"),
    ("runs.csv", lambda path: path.write_text("query_id,answer\nq,1\n"),
     "not a Parquet log", "allocator ingest runs.csv -o runs.parquet"),
])
def test_read_log_says_what_a_wrong_path_is(tmp_path: Path, name: str, make: Callable,
                                            problem: str, hint: str) -> None:
    """A missing file, a folder, or a raw table never reads as "truncated Parquet"."""
    path = tmp_path / name
    make(path)
    with pytest.raises(LogFormatError) as caught:
        read_log(path)
    assert_error(caught.value, path, hint=hint)
    assert problem in str(caught.value) and "truncated" not in str(caught.value)

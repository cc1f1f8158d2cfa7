"""Hostile and careless inputs to the generic readers and ``allocator ingest`` (issue 14,
items 7, 8, 12 and 13), kept as tables: every case names what it feeds in and what the
user must be told (the file, the line, the column, the fix), or what must be kept exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.errors import LogFormatError, ParameterError
from allocator.logs import _formats, read_log, summarize, write_log
from allocator.logs.readers import read_attempts
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate

runner = CliRunner()

GOOD = '{"query_id": "q", "answer": "a", "correct": 1}'
GOOD_CSV = "q,a,1,2"
CSV_HEADER = "query_id,answer,correct,cost"


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def csv_bytes(*records: str) -> bytes:
    return ("\n".join((CSV_HEADER, *records)) + "\n").encode("utf-8")


# ----------------------------------------------------------------- bad bytes and bad values
# name: (file name, content, line the error names, column it names or None, words the
# message must hold, whether --skip-invalid sets just that line aside)
HOSTILE = {
    "Latin-1 JSONL": ("a.jsonl", GOOD.encode() + b"\n" + '{"query_id": "q", "answer": '
                      '"caf\xe9", "correct": 1}\n'.encode("latin-1") + GOOD.encode() + b"\n",
                      2, None, ("UTF-8", "Latin-1"), True),
    "Latin-1 CSV": ("a.csv", csv_bytes(GOOD_CSV) + "q,caf\xe9,1,2\n".encode("latin-1"), 3,
                    None, ("UTF-8", "Latin-1"), False),
    "UTF-16 CSV": ("a.csv", f"{CSV_HEADER}\n{GOOD_CSV}\n".encode("utf-16"), 1, None,
                   ("UTF-16", "UTF-8"), False),
    "UTF-16 JSONL": ("a.jsonl", (GOOD + "\n").encode("utf-16"), 1, None, ("UTF-16", "UTF-8"),
                     False),
    "corrupt gzip JSONL": ("a.jsonl.gz", b"\x1f\x8bnot gzip data", None, None,
                           ("gzip", "corrupt"), False),
    "corrupt gzip CSV": ("a.csv.gz", b"\x1f\x8bnot gzip data", None, None, ("gzip", "corrupt"),
                         False),
    "lone surrogate": ("a.jsonl", jsonl(GOOD, '{"query_id": "q", "answer": "x\\ud800", '
                       '"correct": 1}', GOOD), 2, None, ("surrogate",), True),
    "surrogate encoded as bytes": ("a.jsonl", jsonl(GOOD) + b'{"query_id": "q", "answer": '
                                   b'"x\xed\xa0\x80", "correct": 1}\n' + jsonl(GOOD), 2,
                                   None, ("UTF-8",), True),
    "surrogate encoded as bytes in CSV": ("a.csv", csv_bytes(GOOD_CSV) + b"q,x\xed\xa0\x80,1,2\n",
                                          3, None, ("UTF-8",), False),
    "object answer": ("a.jsonl", jsonl(GOOD, '{"query_id": "q", "answer": {"value": 5}, '
                      '"correct": 1}', GOOD), 2, "answer", ("object", "text"), True),
    "list answer": ("a.jsonl", jsonl(GOOD, '{"query_id": "q", "answer": [5], "correct": 1}',
                    GOOD), 2, "answer", ("array", "text"), True),
    "only object answers": ("a.jsonl", jsonl('{"query_id": "q", "answer": {"v": 1}, '
                            '"correct": 1}'), 1, "answer", ("object",), False),
    "object query id": ("a.jsonl", jsonl(GOOD, '{"query_id": {"id": 1}, "answer": "a", '
                        '"correct": 1}'), 2, "query_id", ("object",), True),
    "boolean cost beside numbers": ("a.jsonl", jsonl(*(
        f'{{"query_id": "q", "answer": "a", "correct": 1, "cost": {cost}}}'
        for cost in ("2", "true", "0.5"))), 2, "cost", ("true",), True),
    "boolean costs only": ("a.jsonl", jsonl('{"query_id": "q", "answer": "a", "correct": 1, '
                           '"cost": true}', '{"query_id": "q", "answer": "a", "correct": 1, '
                           '"cost": false}'), 1, "cost", ("bool",), False),
    "boolean cost in CSV": ("a.csv", csv_bytes(GOOD_CSV, "q,a,1,true", GOOD_CSV), 3, "cost",
                            ("true",), True),
    "boolean score": ("a.jsonl", jsonl(GOOD, '{"query_id": "q", "answer": "a", "correct": 1, '
                      '"score": true}'), 2, "score", ("bool",), True),
    "boolean round": ("a.jsonl", jsonl('{"query_id": "q", "answer": "a", "correct": 1, '
                      '"round": 1}', '{"query_id": "q", "answer": "a", "correct": 1, '
                      '"round": true}'), 2, "round", ("true",), True),
    "empty answer graded correct": ("a.jsonl", jsonl(GOOD, '{"query_id": "q", "answer": "", '
                                    '"correct": 1}', GOOD), 2, "correct",
                                    ("no answer",), True),
    "null answer graded correct": ("a.jsonl", jsonl(GOOD, '{"query_id": "q", "answer": null, '
                                   '"correct": 0.75}', GOOD), 2, "correct",
                                   ("no answer",), True),
    "empty answer graded correct in CSV": ("a.csv", csv_bytes(GOOD_CSV, "q,,1,2"), 3,
                                           "correct", ("no answer",), True),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_refused_with_file_line_and_fix(tmp_path: Path, case: str) -> None:
    name, content, line, column, words, _ = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LogFormatError) as caught:
        read_attempts(path)
    error = caught.value
    assert error.source == str(path)
    assert error.line == line
    assert column is None or error.column == column
    assert error.fix
    for word in words:
        assert word.lower() in str(error).lower(), str(error)


@pytest.mark.parametrize("case", [c for c, spec in HOSTILE.items() if spec[-1]])
def test_skip_invalid_sets_just_the_hostile_line_aside(tmp_path: Path, case: str) -> None:
    name, content, line, _, _, _ = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(content)
    log, rejected = read_attempts(path, skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [line]
    n_records = len([t for t in content.decode("utf-8", "replace").splitlines() if t.strip()])
    header = 1 if name.endswith(".csv") else 0
    assert log.n_attempts == n_records - header - 1


def _read_in_child(path: Path) -> subprocess.CompletedProcess[str]:
    """read_attempts in a fresh interpreter: a crash of the parser must not end the suite."""
    code = ("import sys\nfrom allocator.errors import LogFormatError\n"
            "from allocator.logs.readers import read_attempts\n"
            "try:\n    read_attempts(sys.argv[1], skip_invalid=sys.argv[2] == '1')\n"
            "    print('READ')\n"
            "except LogFormatError as error:\n    print('LINE', error.line, error)\n")
    return subprocess.run([sys.executable, "-c", code, str(path), "0"], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


@pytest.mark.parametrize(("depth", "where"), [(20_000, "array"), (20_000, "object"),
                                              (_formats.MAX_JSON_DEPTH + 1, "array"),
                                              (1500, "object")])
def test_deeply_nested_json_is_refused_not_a_crash(tmp_path: Path, depth: int,
                                                   where: str) -> None:
    open_, close = ("[", "]") if where == "array" else ('{"k":', "}")
    deep = '{"query_id": "q", "answer": "b", "correct": 0, "x": ' + open_ * depth + "1" \
        + close * depth + "}"
    path = tmp_path / "deep.jsonl"
    path.write_bytes(jsonl(GOOD, deep, GOOD))
    done = _read_in_child(path)
    assert done.returncode == 0, f"the reader crashed (exit {done.returncode}): {done.stderr}"
    assert done.stdout.startswith("LINE 2 "), done.stdout
    assert "nested" in done.stdout and str(path) in done.stdout and "Fix:" in done.stdout


@pytest.mark.parametrize("line", [
    '{"query_id": "q", "answer": "b", "correct": 0, "x": ' + "[" * 40 + "]" * 40
    + "}",
    # brackets inside strings do not nest, escaped quotes do not end a string
    '{"query_id": "q", "answer": "' + "{[" * 3000 + '\\\\", "correct": 0, '
    '"x": "\\"' + "[" * 3000 + '"}',
])
def test_nesting_under_the_limit_is_read(tmp_path: Path, line: str) -> None:
    path = tmp_path / "nested.jsonl"
    path.write_bytes(jsonl(GOOD, line))
    log, _ = read_attempts(path)
    assert log.n_attempts == 2
    assert json.loads(line)["answer"] in log.answers


# --------------------------------------------------------------- values kept as written
# name: the JSON tokens of the answer column, one row each; the answer must be the token's
# text as written (a JSON string's content without its quotes).
AS_WRITTEN = {
    "big integers beside a float": ["12345678901234567", "12345678901234568", "0.5"],
    "an integer beside a float": ["5", "5.5"],
    "exponents and trailing zeros": ["1e2", "100", "1.50", "1E2"],
    "beyond 64 bits": ["123456789012345678901234567890", "7"],
    "negative zero": ["-0", "0", "-0.0"],
    "integers only": ["7", "12345678901234567", "-3", "9223372036854775807"],
    "integers only, with negative zero": ["-0", "0", "5"],
    "text beside numbers": ['"5"', "5", '"five"'],
    "booleans": ["true", "false", '"x"'],
    "escapes and surrogate pairs": ['"\\ud83d\\ude00"', '"\\u00e9"', '"a\\"b"'],
}


def _answer_of(log) -> dict[str, str | None]:
    answers = [None if code < 0 else str(log.answers[code]) for code in log.answer]
    return dict(zip(log.attempt_id.tolist(), answers, strict=True))


def _write_tokens(path: Path, tokens: list[str], *, bad_line: bool) -> None:
    lines = [f'{{"query_id": "q", "attempt_id": "r{i}", "answer": {token}, "correct": 0}}'
             for i, token in enumerate(tokens)]
    if bad_line:
        lines.insert(1, "{not json")
    path.write_bytes(jsonl(*lines))


@pytest.mark.parametrize("path_kind", ["fast", "chunked slow path"])
@pytest.mark.parametrize("case", list(AS_WRITTEN))
def test_answers_are_read_as_written_never_through_floats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, path_kind: str) -> None:
    tokens = AS_WRITTEN[case]
    path = tmp_path / "a.jsonl"
    slow = path_kind != "fast"
    if slow:  # one line per chunk: Arrow parses each alone, the chunks' types differ
        monkeypatch.setattr(_formats, "_CHUNK_BYTES", 1)
    _write_tokens(path, tokens, bad_line=slow)
    log, _ = read_attempts(path, skip_invalid=slow)
    expected = {f"r{i}": json.loads(t) if t.startswith('"') else t
                for i, t in enumerate(tokens)}
    assert _answer_of(log) == expected
    distinct = len(set(expected.values()))
    assert len({a for a in log.answers}) == distinct  # equal texts vote together, no others


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_query_ids_are_text_as_written(tmp_path: Path, fmt: str) -> None:
    """``1`` and ``"1"`` are the same text; ``1.0`` is another (data/README.md)."""
    path = tmp_path / f"a.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(jsonl(*(f'{{"query_id": {q}, "answer": "a", "correct": 1}}'
                                 for q in ("1", '"1"', "1.0", "1e0", '"01"'))))
    else:
        path.write_bytes(b"query_id,answer,correct\n1,a,1\n\"1\",a,1\n1.0,a,1\n1e0,a,1\n"
                          b"01,a,1\n")
    log, _ = read_attempts(path)
    sizes = dict(zip(log.query_ids.tolist(), np.diff(log.offsets).tolist(), strict=True))
    assert sizes == {"1": 2, "1.0": 1, "1e0": 1, "01": 1}


def test_number_columns_beside_text_columns_keep_their_values(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl('{"query_id": 7, "answer": 5, "correct": 1, "cost": 12.5}',
                           '{"query_id": 7, "answer": 5.0, "correct": 0.25, "cost": 3}'))
    log, _ = read_attempts(path)
    assert log.cost.tolist() == [12.5, 3.0]
    assert log.correct.tolist() == [1.0, 0.25]
    assert log.query_ids.tolist() == ["7"]
    assert [log.answers[c] for c in log.answer] == ["5", "5.0"]


# ------------------------------------------------------------------------ ingest outputs
def _source(tmp_path: Path, rows: int = 6) -> Path:
    path = tmp_path / "runs.jsonl"
    path.write_bytes(jsonl(*(f'{{"query_id": "q{i % 3}", "answer": "{i % 2}", '
                             f'"correct": {i % 2}, "cost": {i + 1}}}' for i in range(rows))))
    return path


def _in_folder(tmp_path: Path) -> Path:
    (tmp_path / "here").mkdir()
    return tmp_path / "here"


# name: (output path from the temporary folder and the source, words the error must say)
OUTPUTS = {
    "missing folder": (lambda tmp, src: tmp / "nowhere" / "log.parquet",
                       ("folder", "does not exist", "mkdir")),
    "a folder": (lambda tmp, src: _in_folder(tmp), ("is a folder", ".parquet")),
    "a CSV name": (lambda tmp, src: tmp / "log.csv", (".csv", ".parquet")),
    "a JSONL name": (lambda tmp, src: tmp / "log.jsonl", (".jsonl", ".parquet")),
    "the input itself": (lambda tmp, src: src, ("input",)),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_ingest_refuses_a_bad_output_path_before_reading(tmp_path: Path, case: str) -> None:
    make, words = OUTPUTS[case]
    source = _source(tmp_path)
    before = source.read_bytes()
    output = make(tmp_path, source)
    result = runner.invoke(app, ["ingest", str(source), "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    message = " ".join(result.output.split())
    assert str(output) in message.replace("\n", "") or output.name in message
    for word in words:
        assert word in message, message
    assert source.read_bytes() == before


def test_ingest_onto_its_parquet_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    source = _source(tmp_path)
    log_path = tmp_path / "log.parquet"
    assert runner.invoke(app, ["ingest", str(source), "-o", str(log_path)]).exit_code == 0
    before = log_path.read_bytes()
    alias = tmp_path / "." / "log.parquet"
    result = runner.invoke(app, ["ingest", str(alias), "-o", str(log_path)])
    assert result.exit_code == 2 and "input" in result.output
    assert log_path.read_bytes() == before


def test_a_clean_ingest_removes_a_stale_rejected_file(tmp_path: Path) -> None:
    source = _source(tmp_path)
    output = tmp_path / "log.parquet"
    side = tmp_path / "log.parquet.rejected.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(source.read_bytes() + b"{torn\n")
    assert runner.invoke(app, ["ingest", str(bad), "-o", str(output),
                               "--skip-invalid"]).exit_code == 0
    assert side.exists()
    result = runner.invoke(app, ["ingest", str(source), "-o", str(output), "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert not side.exists()


@pytest.mark.parametrize("price", ["1e308", "inf", "nan", "-1"])
def test_a_price_that_makes_costs_non_finite_is_refused_at_ingest(tmp_path: Path,
                                                                   price: str) -> None:
    source = _source(tmp_path)
    output = tmp_path / "log.parquet"
    result = runner.invoke(app, ["ingest", str(source), "-o", str(output), "--price",
                                 f"default={price}"])
    assert result.exit_code == 2, result.output
    assert "default" in result.output and "price" in result.output
    assert isinstance(result.exception, SystemExit)
    assert not output.exists()


def test_prices_whose_products_overflow_are_refused_by_the_log(tmp_path: Path) -> None:
    log, _ = read_attempts(_source(tmp_path))
    assert np.isfinite(log.with_prices({"default": 1e300}).cost).all()
    with pytest.raises(ParameterError, match="finite"):
        log.with_prices({"default": 1e308})


def test_concurrent_writers_of_one_output_never_share_a_temporary_file(tmp_path: Path) -> None:
    """Eight threads write different logs to one path at once: each write succeeds, and the
    file left is one whole log of the eight."""
    logs = [generate(SyntheticConfig(n_queries=400 + 50 * i, arms=(SyntheticArm("a", 0.5,
                                                                                1.0, 8),)),
                     seed=i) for i in range(8)]
    output = tmp_path / "log.parquet"
    errors: list[BaseException] = []
    start = threading.Barrier(len(logs))

    def write(log) -> None:
        start.wait()
        try:
            write_log(log, output)
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert read_log(output).fingerprint() in {log.fingerprint() for log in logs}
    assert [p.name for p in tmp_path.iterdir()] == ["log.parquet"]


def test_a_temporary_file_of_the_old_fixed_name_is_not_touched(tmp_path: Path) -> None:
    """Another writer's ``<output>.partial`` (the old shared name) is left alone."""
    output = tmp_path / "log.parquet"
    other = tmp_path / "log.parquet.partial"
    other.write_bytes(b"another writer's half-written file")
    result = runner.invoke(app, ["ingest", str(_source(tmp_path)), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert other.read_bytes() == b"another writer's half-written file"
    assert pq.read_table(output).num_rows == 6


WRITE_ON_A_FULL_DISK = """
import resource, signal, sys
from allocator.errors import LogFormatError
from allocator.logs import write_log
from allocator.logs.synthetic import SyntheticArm, SyntheticConfig, generate

log = generate(SyntheticConfig(n_queries=2000, arms=(SyntheticArm("a", 0.5, 1.0, 8),)), seed=0)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
try:
    write_log(log, sys.argv[1])
    print("WROTE")
except LogFormatError as error:
    print("ERROR", error)
"""


def test_a_log_that_does_not_fit_on_disk_is_a_clear_error_and_the_old_file_stays(
        tmp_path: Path) -> None:
    """The kernel's file-size limit makes the disk full for this process (any user)."""
    output = tmp_path / "log.parquet"
    output.write_bytes(b"an earlier good log")
    done = subprocess.run([sys.executable, "-c", WRITE_ON_A_FULL_DISK, str(output)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.stdout.startswith("ERROR "), done.stdout + done.stderr
    assert str(output) in done.stdout and "too large" in done.stdout and "Fix:" in done.stdout
    assert output.read_bytes() == b"an earlier good log"
    assert [p.name for p in tmp_path.iterdir()] == ["log.parquet"]  # no temporary left


# ----------------------------------------------------------------- the summary says it all
def test_the_summary_counts_attempts_without_an_answer(tmp_path: Path) -> None:
    rows = [{"query_id": f"q{i % 4}", "answer": "" if i % 3 == 0 else str(i % 2),
             "correct": 0 if i % 3 == 0 else i % 2, "arm": "ab"[i % 2]} for i in range(30)]
    path = tmp_path / "runs.jsonl"
    path.write_bytes(jsonl(*(json.dumps(row) for row in rows)))
    empty = {arm: sum(1 for r in rows if r["arm"] == arm and r["answer"] == "")
             for arm in "ab"}
    log, _ = read_attempts(path)
    summary = summarize(log)
    assert {arm: summary[arm].no_answer for arm in "ab"} == empty
    assert summary["(all arms)"].no_answer == sum(empty.values())
    result = runner.invoke(app, ["ingest", str(path), "-o", str(tmp_path / "l.parquet"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["a"]["no_answer"] == empty["a"]
    assert f"{sum(empty.values())} attempts have no answer" in " ".join(result.output.split())


# ------------------------------------------------------------ the nesting guard, exactly
@pytest.mark.parametrize("window", [1 << 15, 64, 7])
def test_the_nesting_guard_stops_exactly_the_blocks_with_a_line_at_the_limit(
        monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    """Against a direct count of brackets and braces per line, on random blocks (the
    cheap window bound and the line-by-line count must both agree with it)."""
    import random

    monkeypatch.setattr(_formats, "_WINDOW_BYTES", window)
    rng = random.Random(window)
    limit = _formats.MAX_JSON_DEPTH
    stopped = 0
    for _ in range(200):
        lines = ["{" * rng.choice([0, 3, 200, limit - 1, limit, 2000])
                 + "".join(rng.choice('{[x]}a"') for _ in range(rng.randint(0, 3000)))
                 for _ in range(rng.randint(1, 30))]
        carry = rng.choice([0, 100, limit - 1])
        counts = [line.count("{") + line.count("[") for line in lines]
        counts[0] += carry
        data = "\n".join(lines).encode()
        if max(counts) >= limit:
            stopped += 1
            with pytest.raises(_formats._Unsafe):
                _formats._check_openers(data, carry)
        else:
            assert _formats._check_openers(data, carry) == counts[-1]
    assert 0 < stopped < 200


@pytest.mark.parametrize("limit", [2048, 50, 3])
def test_the_stream_guard_stops_exactly_the_blocks_with_a_line_at_its_limit(
        monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """The fast path's guard (a jump from newline to newline that counts only long
    lines) against a direct count per line, on random blocks."""
    import random

    monkeypatch.setattr(_formats, "_GUARD_DEPTH", limit)
    rng = random.Random(limit)
    stopped = 0
    for _ in range(300):
        lines = ["[" * rng.choice([0, 1, limit // 2, limit - 1, limit, 2 * limit])
                 + "".join(rng.choice('{[x]}a"') for _ in range(rng.randint(0, 3 * limit)))
                 for _ in range(rng.randint(1, 30))]
        carry = rng.choice([0, 1, limit - 1])
        counts = [line.count("{") + line.count("[") for line in lines]
        counts[0] += carry
        data = "\n".join(lines).encode()
        if max(counts) >= limit:
            stopped += 1
            with pytest.raises(_formats._Unsafe):
                _formats._guard_lines(data, carry)
        else:
            assert _formats._guard_lines(data, carry) == counts[-1]
    assert 0 < stopped < 300

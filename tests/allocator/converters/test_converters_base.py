"""Shared converter helpers: readers (gzip, JSON Lines, JSON arrays, CSV) and the
answer normalisation and extraction rules."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from allocator.converters.base import (
    answers_match,
    as_name_set,
    extract_final_answer,
    normalize_answer,
    normalize_target,
    read_bytes,
    read_csv_table,
    read_json_records,
    read_jsonl_table,
)
from allocator.errors import ConverterError, ParameterError


# ----------------------------------------------------------------------- readers
def test_read_bytes_decompresses_gzip_by_content(tmp_path: Path) -> None:
    packed = tmp_path / "data.txt"
    packed.write_bytes(gzip.compress(b"hello\n"))
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"hello\n")
    assert read_bytes(packed) == read_bytes(plain) == b"hello\n"


def test_jsonl_records_keep_line_numbers_across_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    records, problems = read_json_records(path, skip_invalid=False)
    assert records == [(1, {"a": 1}), (4, {"a": 2})]
    assert problems == []


def test_bad_json_line_raises_with_line_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ConverterError) as caught:
        read_json_records(path, skip_invalid=False)
    assert (caught.value.source, caught.value.line) == (str(path), 2)
    assert "invalid JSON" in str(caught.value) and caught.value.fix


def test_bad_json_line_is_a_problem_with_skip_invalid(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    records, problems = read_json_records(path, skip_invalid=True)
    assert [line for line, _ in records] == [1, 3]
    assert [(p.file, p.line) for p in problems] == [(str(path), 2)]


def test_json_array_elements_get_the_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"a": 1}, {"b": [1, 2]}, 3], indent=2))
    records, _ = read_json_records(path, skip_invalid=False)
    assert [value for _, value in records] == [{"a": 1}, {"b": [1, 2]}, 3]
    lines = path.read_text().split("\n")
    for line, value in records:
        start = lines[line - 1].strip()
        assert start in ("{", "3"), (line, value)


def test_broken_json_array_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('[\n  {"a": 1},\n  {"a": }\n]\n')
    with pytest.raises(ConverterError) as caught:
        read_json_records(path, skip_invalid=True)
    assert caught.value.line == 3


def test_jsonl_table_fast_path_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n\n{"a": 2, "b": "y"}\n{"a": 3, "b": "z"}')
    table, lines, problems = read_jsonl_table(path, skip_invalid=False)
    assert table.column("a").to_pylist() == [1, 2, 3]
    assert lines.tolist() == [1, 3, 4]
    assert problems == []


def test_jsonl_table_with_a_type_change_turns_the_field_into_text(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": 3}\n{"a": 3, "b": null}\n')
    table, lines, _ = read_jsonl_table(path, skip_invalid=False)
    assert table.column("b").to_pylist() == ["x", "3", None]
    assert table.column("a").to_pylist() == [1, 2, 3]
    assert lines.tolist() == [1, 2, 3]


def test_jsonl_table_refuses_non_objects_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ConverterError, match="expected a JSON object") as caught:
        read_jsonl_table(path, skip_invalid=False)
    assert caught.value.line == 2
    table, lines, problems = read_jsonl_table(path, skip_invalid=True)
    assert (table.num_rows, lines.tolist(), problems[0].line) == (1, [1], 2)
    path.write_text("\n")
    with pytest.raises(ConverterError, match="no readable records"):
        read_jsonl_table(path, skip_invalid=True)


def test_csv_table_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,true\n2,false\n"))
    table = read_csv_table(path)
    assert table.column("a").to_pylist() == [1, 2]
    assert table.column("b").to_pylist() == [True, False]


def test_non_utf8_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(ConverterError, match="UTF-8") as caught:
        read_json_records(path, skip_invalid=False)
    assert caught.value.line == 2


def test_name_sets_accept_lists_and_comma_text() -> None:
    assert as_name_set("a, b,", "owner", "p") == {"a", "b"}
    assert as_name_set(["a"], "owner", "p") == {"a"}
    assert as_name_set(None, "owner", "p") is None
    with pytest.raises(ParameterError, match="'p'"):
        as_name_set(" , ", "owner", "p")


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("18", "18"), ("18.0", "18"), (18.0, "18"), (18, "18"), ("1,000", "1000"),
        ("$1,234.50", "1234.5"), ("0.50", "0.5"), ("-3", "-3"), ("12%", "12"),
        ("$18$", "18"), ("\\text{18}", "18"), ("18.", "18"), (" Paris ", "paris"),
        ("New   York\n", "new york"), ("'B'", "b"), ("", None), ("  ", None), (None, None),
        ("1/2", "1/2"), ("1,2", "1,2"), ("1e3", "1000"),
    ],
)
def test_normalize_answer(raw: object, expected: str | None) -> None:
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so x = 3 and \\boxed{\\frac{1}{2}} is it", "\\frac{1}{2}"),
        ("first \\boxed{3} then \\boxed{4}", "4"),
        ("She pays 5 + 13 = 18 dollars.\n#### 18", "18"),
        ("3 apples and 4 pears. The answer is 7 fruits.", "7"),
        ("The final answer is: $1,250.", "1250"),
        ("Answer: Paris.", "paris"),
        ("The answer is (B).", "b"),
        ("2 + 2 = 4", "4"),
        ("I cannot tell.", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_final_answer(text: str | None, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


def test_targets_in_gsm8k_style_use_the_part_after_the_marks() -> None:
    assert normalize_target("She has 3 * 6 = 18.\n#### 18") == "18"
    assert normalize_target(7) == "7"
    assert normalize_target("Paris") == "paris"


def test_answers_match_numbers_numerically_and_text_exactly() -> None:
    assert answers_match("18", "18")
    assert answers_match("0.3333333333", "0.33333333333")
    assert not answers_match("18", "18.5")
    assert not answers_match("paris", "london")
    assert not answers_match(None, "18")
    assert not answers_match("18", None)


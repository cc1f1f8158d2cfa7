"""The converters' public API, and the behaviour every registered converter shares,
checked table-driven over the registry on tiny hand-written sources."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import allocator.converters as converters
from allocator.converters import CONVERTERS, Converter, available_formats, convert
from allocator.errors import ConverterError, LogFormatError, ParameterError

FORMATS = sorted(CONVERTERS)


def test_public_api_is_pinned() -> None:
    assert sorted(converters.__all__) == sorted(
        ["CONVERTERS", "Converted", "Converter", "available_formats", "convert"]
    )


def test_registry_holds_the_six_formats_under_their_own_names() -> None:
    assert available_formats() == [
        "codet", "lm-eval", "mot-cascade", "openai", "reasoning-gym", "swe-bench-pro"]
    for name, converter in CONVERTERS.items():
        assert isinstance(converter, Converter)
        assert converter.name == name


@pytest.mark.parametrize("name", FORMATS)
def test_every_converter_describes_itself_in_one_line(name: str) -> None:
    converter = CONVERTERS[name]
    assert converter.description.strip()
    assert "\n" not in converter.description
    # The class documents its source format, its mapping and its options.
    doc = type(converter).__doc__
    assert doc and "Options:" in doc and "Mapping:" in doc and "Source format" in doc


def test_unknown_format_names_the_known_ones(tmp_path) -> None:
    with pytest.raises(ParameterError) as caught:
        convert(tmp_path, "csv-of-my-own")
    for name in FORMATS:
        assert name in str(caught.value)


@pytest.mark.parametrize("name", FORMATS)
def test_unknown_option_is_refused_with_the_valid_ones(name: str, tiny_source) -> None:
    written = tiny_source(name)
    with pytest.raises(ParameterError) as caught:
        convert(written.source, name, no_such_option=1)
    assert "no_such_option" in str(caught.value)
    for option in CONVERTERS[name].options:
        assert option in str(caught.value)


@pytest.mark.parametrize("name", FORMATS)
def test_missing_source_is_a_converter_error(name: str, tmp_path) -> None:
    with pytest.raises(ConverterError, match="no such file"):
        convert(tmp_path / "absent.jsonl", name)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("gz", [False, True])
def test_tiny_source_converts_to_a_valid_log(name: str, gz: bool, tiny_source) -> None:
    written = tiny_source(name, gz=gz)
    log, rejected = convert(written.source, name)
    assert log.n_attempts == written.attempts
    assert len(rejected) == 0
    assert len(set(log.attempt_id)) == log.n_attempts
    assert np.all(np.diff(log.offsets) > 0)
    assert set(np.unique(log.correct)) <= {0.0, 1.0}
    assert np.all(log.cost >= 0)
    assert log.source == str(written.source)


@pytest.mark.parametrize("name", FORMATS)
def test_to_arrow_gives_canonical_and_query_columns(name: str, tiny_source) -> None:
    table = CONVERTERS[name].to_arrow(tiny_source(name).source)
    assert isinstance(table, pa.Table)
    for column in ("attempt_id", "query_id", "arm", "answer", "correct", "cost"):
        assert column in table.column_names
    assert any(c.startswith("query.") for c in table.column_names)


@pytest.mark.parametrize("name", FORMATS)
def test_bad_record_strict_names_file_and_line(name: str, tiny_source) -> None:
    written = tiny_source(name, bad=True)
    with pytest.raises(LogFormatError) as caught:
        convert(written.source, name)
    error = caught.value
    assert isinstance(error, ConverterError)
    assert error.source == str(written.main)
    assert error.line == written.bad_line
    assert error.fix
    assert f"line {written.bad_line}" in str(error)


@pytest.mark.parametrize("name", FORMATS)
def test_bad_record_with_skip_invalid_is_reported_not_dropped(name: str, tiny_source) -> None:
    written = tiny_source(name, bad=True)
    log, rejected = convert(written.source, name, skip_invalid=True)
    assert log.n_attempts == written.attempts
    assert len(rejected) == written.bad_attempts
    rows = rejected.rows.to_pylist()
    assert {row["_file"] for row in rows} == {str(written.main)}
    assert {row["_line"] for row in rows} == {written.bad_line}
    assert all(row["_reason"] for row in rows)


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_gzip_is_named_as_such(name: str, tiny_source) -> None:
    written = tiny_source(name, gz=True)
    data = written.main.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    written.main.write_bytes(data[: len(data) - 12])
    with pytest.raises(ConverterError, match="truncated") as caught:
        convert(written.source, name)
    assert caught.value.source == str(written.main)
    assert "gzip -t" in caught.value.fix


def test_all_records_bad_is_an_error_naming_the_first(tiny_source) -> None:
    written = tiny_source("openai")
    written.main.write_text('{"query_id": "q"}\n')
    with pytest.raises(ConverterError, match=r"no attempts.*line 1"):
        convert(written.source, "openai", skip_invalid=True)


def test_plain_file_named_gz_is_read_by_content(tiny_source) -> None:
    written = tiny_source("reasoning-gym")
    renamed = written.main.with_name("samples.jsonl.gz")
    renamed.write_bytes(written.main.read_bytes())
    log, _ = convert(renamed, "reasoning-gym")
    assert log.n_attempts == written.attempts


@pytest.mark.parametrize("name", FORMATS)
def test_converted_log_round_trips_through_parquet(name: str, tiny_source, tmp_path) -> None:
    from allocator.logs import read_log, write_log

    log, _ = convert(tiny_source(name).source, name)
    again = read_log(write_log(log, tmp_path / "log.parquet"))
    assert again.fingerprint() == log.fingerprint()
    assert set(again.extra) == set(log.extra)
    assert set(again.queries.metadata) == set(log.queries.metadata)

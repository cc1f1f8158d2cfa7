"""The optional timing columns: validated with file, line and column; read as seconds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from allocator.errors import LogFormatError
from allocator.logs.table import AttemptLog


def _table(**columns: list) -> pa.Table:
    base = {"query_id": ["q1", "q1", "q2"], "answer": ["1", "2", "1"],
            "correct": [1.0, 0.0, 1.0]}
    return pa.table({**base, **columns})


def test_durations_are_end_minus_start_in_query_order() -> None:
    log, _ = AttemptLog.from_arrow(_table(started_at=[0.0, 0.5, 10.0],
                                          ended_at=[2.0, 0.75, 13.5], wave=[0, 0, 1]))
    assert log.has_timing
    np.testing.assert_allclose(log.duration, [2.0, 0.25, 3.5])
    np.testing.assert_array_equal(log.extra["wave"], [0.0, 0.0, 1.0])


def test_text_times_parse_as_numbers() -> None:
    log, _ = AttemptLog.from_arrow(_table(started_at=["0", "1.5", ""],
                                          ended_at=["1", "2", ""]))
    assert not log.has_timing  # one untimed row
    np.testing.assert_allclose(log.duration[:2], [1.0, 0.5])
    assert np.isnan(log.duration[2])


def test_an_untimed_log_has_no_durations() -> None:
    log, _ = AttemptLog.from_arrow(_table())
    assert not log.has_timing
    assert np.isnan(log.duration).all()


@pytest.mark.parametrize(("columns", "column", "line", "words"), [
    ({"started_at": [0.0, 1.0, 2.0], "ended_at": [1.0, 0.5, 3.0]}, "ended_at", 2,
     "ends before it starts"),
    ({"started_at": [0.0, 1.0, None], "ended_at": [1.0, 2.0, 3.0]}, "started_at", 3,
     "only one of"),
    ({"started_at": [0.0, 1.0, 2.0]}, "ended_at", 1, "no 'ended_at'"),
    ({"started_at": [0.0, float("inf"), 2.0], "ended_at": [1.0, 2.0, 3.0]}, "started_at",
     2, "finite"),
    ({"wave": [0, 1.5, 2]}, "wave", 2, "whole number"),
    ({"wave": [0, -1, 2]}, "wave", 2, "whole number"),
    ({"started_at": ["0", "soon", "1"], "ended_at": [1.0, 2.0, 3.0]}, "started_at", 2,
     "expected a number"),
])
def test_bad_timing_names_line_and_column(columns: dict, column: str, line: int,
                                          words: str) -> None:
    with pytest.raises(LogFormatError) as caught:
        AttemptLog.from_arrow(_table(**columns), source="runs.csv")
    error = caught.value
    assert error.column == column
    assert error.line == line
    assert words in str(error)
    assert "runs.csv" in str(error)


def test_skip_invalid_sets_bad_timing_rows_aside() -> None:
    log, rejected = AttemptLog.from_arrow(
        _table(started_at=[0.0, 1.0, 2.0], ended_at=[1.0, 0.5, 3.0]), skip_invalid=True)
    assert len(rejected) == 1 and log.n_attempts == 2
    np.testing.assert_allclose(log.duration, [1.0, 1.0])

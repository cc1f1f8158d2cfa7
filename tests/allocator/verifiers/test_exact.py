"""The exact checker: normalised equality with the reference, 1/0, free, NaN without answer."""

from __future__ import annotations

import asyncio
import math

import pytest

from allocator.errors import ParameterError, VerifierError
from allocator.verifiers import Candidate, ExactChecker, Problem, normalize_answer


@pytest.mark.parametrize(("text", "expected"), [
    ("5", "5"), (" 5.0 ", "5"), ("+5", "5"), ("5.", "5"), ("05", "5"), ("-0", "0"),
    ("1,000", "1000"), ("1,000.50", "1000.5"), ("0.50", "0.5"), (".5", "0.5"),
    ("1e3", "1000"), ("-2.50", "-2.5"), ("Paris.", "paris"), ("  New   York ", "new york"),
    ("5,00", "5,00"), ("(A)", "(a)"), ("", ""), ("1e999999", "1e+999999"), ("nan", "nan"),
    ("...", "..."),
])
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(("first", "second"), [
    # more significant digits than decimal's default 28: they must not be rounded away
    ("1.00000000000000000000000000001", "1"),
    ("0.12345678901234567890123456789", "0.12345678901234567890123456788"),
    ("12345678901234567890123456789012e70", "12345678901234567890123456789013e70"),
    # a tiny number is not zero, whatever decimal's exponent range
    ("1e-999999999", "0"),
])
def test_distinct_numbers_stay_distinct(first: str, second: str) -> None:
    assert normalize_answer(first) != normalize_answer(second)


def test_huge_exponents_are_normalised_not_raised() -> None:
    assert normalize_answer("1e999999999") == "1e+999999999"
    assert normalize_answer("10e999999999") == normalize_answer("1e1000000000")
    verdicts = check(ExactChecker(), "5", [Candidate("x", "1e999999999"), Candidate("5", "5")])
    assert [v.score for v in verdicts] == [0.0, 1.0]


def check(checker: ExactChecker, reference: str | None, candidates: list[Candidate]):
    return asyncio.run(checker.verify(Problem("q", "question", reference), candidates))


def test_scores_one_for_a_match_zero_otherwise_nan_without_answer() -> None:
    verdicts = check(ExactChecker(), "5", [
        Candidate("... so 5.0", "5.0"), Candidate("... 6", "6"), Candidate("no idea"),
        Candidate("... 5", 5)])
    assert [v.score for v in verdicts[:2]] == [1.0, 0.0]
    assert math.isnan(verdicts[2].score) and not verdicts[2].usable
    assert verdicts[3].score == 1.0  # a non-string answer is compared as its str()
    assert [v.detail for v in verdicts] == ["match", "mismatch", "no answer", "match"]
    assert all(v.cost == 0.0 for v in verdicts)


def test_can_compare_the_whole_text_with_a_custom_normaliser() -> None:
    def letters(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalpha())

    checker = ExactChecker(normalize=letters, field="text")
    verdicts = check(checker, "B", [Candidate("(b)"), Candidate("c", answer="b")])
    assert [v.score for v in verdicts] == [1.0, 0.0]


def test_errors() -> None:
    with pytest.raises(VerifierError, match="reference"):
        check(ExactChecker(), None, [Candidate("x", "x")])
    assert check(ExactChecker(), None, []) == []

    def broken(text: str) -> str:
        raise RuntimeError("boom")

    with pytest.raises(VerifierError, match="normaliser failed"):
        check(ExactChecker(normalize=broken), "5", [Candidate("5", "5")])
    with pytest.raises(VerifierError, match="must return a string"):
        check(ExactChecker(normalize=len), "5", [Candidate("5", "5")])  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="normalize"):
        ExactChecker(normalize="strip")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="field"):
        ExactChecker(field="reasoning")

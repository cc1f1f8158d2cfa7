"""The rankings of ``benchmarks/codet_verifier.py`` on hand-made problems."""

from __future__ import annotations

import math

import pytest

from benchmarks.codet_verifier import (
    consensus,
    dual_agreement_pick,
    generated_tests,
    verifier_pick,
)


def row(passed: bool, bits: str) -> dict:
    score = bits.count("1") / len(bits) if bits else math.nan
    return {"passed": passed, "bits": bits, "score": score}


def test_verifier_pick_breaks_ties_uniformly_and_falls_back_to_random() -> None:
    rows = [row(True, "110"), row(False, "110"), row(False, "100"), row(True, "000")]
    assert verifier_pick(rows) == 0.5  # two tied at 2/3: one passes
    unscored = [row(True, ""), row(False, ""), row(False, ""), row(False, "")]
    assert verifier_pick(unscored) == 0.25


def test_dual_agreement_weighs_consensus_size_against_tests_passed() -> None:
    # three samples pass test 0 only (two of them are right); one wrong sample passes both
    rows = [row(True, "10"), row(True, "10"), row(False, "10"), row(False, "11")]
    assert consensus("10", [True, True, False], [1, 1], linear=False) == pytest.approx(
        math.sqrt(3))
    assert consensus("11", [False], [1, 1], linear=False) == 2.0
    assert dual_agreement_pick(rows, [1, 1], linear=False) == 0.0  # 2 > sqrt(3)
    assert dual_agreement_pick(rows, [1, 1], linear=True) == pytest.approx(2 / 3)  # 3 > 2
    # test 0 written three times by the generator: 3 sqrt(3) > 4
    assert dual_agreement_pick(rows, [3, 1], linear=False) == pytest.approx(2 / 3)


def test_dual_agreement_without_any_passed_test_is_random() -> None:
    rows = [row(True, "00"), row(False, "00")]
    assert dual_agreement_pick(rows, [1, 1], linear=True) == 0.5


def test_generated_tests_keep_five_per_sample_and_count_repeats() -> None:
    sample = "".join(f" f({i}) == {i}\nassert" for i in range(7))
    tests, weights = generated_tests([sample, " f(0) == 0\n"], "f")
    assert len(tests) == 5 and tests[0] == "assert  f(0) == 0"
    assert weights[0] == 2 and weights[1:] == [1, 1, 1, 1]

"""The shared argument checks: what each accepts, returns and how its error reads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from allocator._checks import check_cost, check_int, check_number, check_prior, is_int
from allocator.errors import ParameterError


@pytest.mark.parametrize(("value", "minimum", "ok"), [
    (0, 0, True), (3, 1, True), (np.int64(2), 1, True), (np.uint8(0), 0, True),
    (0, 1, False), (-1, 0, False), (True, 0, False), (False, 0, False), (1.0, 0, False),
    ("1", 0, False), (None, 0, False)])
def test_is_int_refuses_bools_floats_and_small_values(value: object, minimum: int,
                                                      ok: bool) -> None:
    assert is_int(value, minimum) is ok


def test_check_int_returns_a_python_int_and_names_the_argument() -> None:
    value = check_int("Owner", "n", np.int32(4), minimum=1)
    assert value == 4 and type(value) is int
    assert check_int("Owner", "cap", None, none=True) is None
    with pytest.raises(ParameterError) as error:
        check_int("Owner", "cap", True, minimum=0, none=True)
    assert error.value.parameter == "cap"
    assert "Owner" in str(error.value) and "an integer >= 0 or None" in str(error.value)
    with pytest.raises(ParameterError, match="an integer >= 1"):
        check_int("Owner", "n", None, minimum=1)


@pytest.mark.parametrize(("value", "strict", "ok"), [
    (0, False, True), (0.0, True, False), ("2.5", True, True), (math.inf, False, False),
    (math.nan, False, False), (-1e-9, False, False), (object(), False, False)])
def test_check_number(value: object, strict: bool, ok: bool) -> None:
    if ok:
        assert check_number("Owner", "x", value, strict=strict) == float(value)  # type: ignore[arg-type]
    else:
        relation = ">" if strict else ">="
        with pytest.raises(ParameterError, match=f"a finite number {relation} 0"):
            check_number("Owner", "x", value, strict=strict)


def test_check_cost_reads_numbers_and_refuses_negative_or_infinite() -> None:
    assert check_cost("Owner", "cost", "1.5") == 1.5
    for bad in (-0.5, math.inf, "x", None):
        with pytest.raises(ParameterError, match="a finite cost >= 0") as error:
            check_cost("Owner", "cost", bad)
        assert error.value.parameter == "cost"


def test_check_prior_copies_and_checks_shape_and_range() -> None:
    given = np.array([0.2, 1.0])
    prior = check_prior("Owner", "prior", given, (2,))
    assert prior.dtype == np.float64 and np.array_equal(prior, given)
    assert prior is not given
    for bad in ([0.2], [0.2, 1.1], [np.nan, 0.5], [[0.1, 0.2]], "ab"):
        with pytest.raises(ParameterError, match=r"shape \(2,\) with values in \[0, 1\]"):
            check_prior("Owner", "prior", bad, (2,))

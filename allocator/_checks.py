"""Argument checks shared by the runtime, the policies and the environments.

Each check returns the value in its canonical type or raises
:class:`~allocator.errors.ParameterError` naming the owner, the argument, what was
expected and what was given. Integers are ``numbers.Integral`` (numpy's included) but
never ``bool``; numbers and costs are anything ``float()`` reads.

This module imports numpy only.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, TypeGuard

import numpy as np

from allocator.errors import ParameterError

__all__ = ["check_cost", "check_int", "check_number", "check_prior", "is_int", "is_real"]


def is_int(value: object, minimum: int | None = None) -> TypeGuard[int | np.integer]:
    """Whether ``value`` is an integer (not a bool), ``>= minimum`` when given."""
    if type(value) is not int and (isinstance(value, bool)  # plain ints: the fast path
                                   or not isinstance(value, numbers.Integral)):
        return False
    return minimum is None or bool(value >= minimum)  # type: ignore[operator]


def is_real(value: object) -> TypeGuard[float | int | np.number]:
    """Whether ``value`` is a real number (an int, a float, a numpy number; not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: object, *, minimum: int = 0,
              none: bool = False, expected: str | None = None) -> Any:
    """``value`` as an ``int`` (or None where ``none`` allows it).

    Args:
        owner: who checks (a class or function name).
        name: the argument's name.
        value: the value given.
        minimum: the least value allowed.
        none: whether None is allowed (returned as is).
        expected: the message's "expected" part (default: ``an integer >= minimum``,
            ``or None`` appended where allowed).

    Raises:
        ParameterError: not an integer ``>= minimum`` (nor None where allowed).
    """
    if value is None and none:
        return None
    if not is_int(value, minimum):
        raise ParameterError(owner, name, expected or f"an integer >= {minimum}"
                             + (" or None" if none else ""), value)
    return int(value)  # type: ignore[arg-type]


def check_number(owner: str, name: str, value: object, *, low: float = 0,
                 strict: bool = False, expected: str | None = None) -> float:
    """``value`` as a finite ``float`` ``>= low`` (``> low`` when ``strict``): anything
    ``float()`` reads.

    Raises:
        ParameterError: not such a number; the message says ``a finite number >= low``
            (``low`` as given), or ``expected``.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < low or (strict and number == low):
        relation = ">" if strict else ">="
        raise ParameterError(owner, name, expected or f"a finite number {relation} {low}",
                             value)
    return number


def check_cost(owner: str, name: str, value: object) -> float:
    """``value`` as a float cost in the log's units, finite and >= 0.

    Raises:
        ParameterError: not such a cost.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ParameterError(owner, name, "a finite cost >= 0 (in the log's units)", value)
    return number


def check_prior(owner: str, name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a new float64 array of ``shape`` with every entry in [0, 1].

    Raises:
        ParameterError: another shape, or an entry outside [0, 1] (NaN included).
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full(1, np.nan)
    if array.shape != shape or not ((array >= 0) & (array <= 1)).all():
        raise ParameterError(owner, name, f"an array of shape {shape} with values in [0, 1]",
                             value)
    return array.copy()

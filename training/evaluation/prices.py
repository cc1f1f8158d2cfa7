"""The prices (lambdas) a learned policy is evaluated and calibrated at.

Its own module so that the evaluation (:mod:`training.evaluation.evaluate`), the
calibration (:mod:`training.rl.calibrate`) and the training configuration read one grid
without importing each other.
"""

from __future__ import annotations

__all__ = ["lambda_grid"]


def lambda_grid(lambda_range: tuple[float, float] | list[float],
                values: tuple[float, ...] | None = None) -> tuple[float, ...]:
    """The prices a learned policy is evaluated at, increasing.

    ``values`` if given; else eight log-spaced over ``lambda_range`` (with a lower end of
    0: 0, then seven log-spaced from ``high / 1000`` to ``high``; one value when the range
    is a point). Values are rounded to 6 significant digits, as reports print them.
    """
    if values is not None:
        return tuple(sorted({float(v) for v in values}))
    low, high = (float(v) for v in lambda_range)
    if high <= low:
        return (low,)
    count, start = (7, high / 1000.0) if low == 0 else (8, low)
    ratio = (high / start) ** (1.0 / (count - 1))
    grid = {start * ratio**k for k in range(count - 1)} | {high} | ({0.0} if low == 0 else set())
    return tuple(sorted(float(f"{v:.6g}") for v in grid))

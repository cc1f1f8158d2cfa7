"""The prices (lambdas) a learned policy is evaluated and calibrated at.

Its own module so that the evaluation (:mod:`allocator.training.evaluation.evaluate`), the
calibration (:mod:`allocator.training.rl.calibrate`) and the training configuration read one grid
without importing each other.
"""

from __future__ import annotations

__all__ = ["LEARNED_GRID_POINTS", "lambda_grid"]

#: Prices a learned policy is replayed at by default. Sixteen log-spaced values (neighbours
#: about 1.7x apart over the default range): the baselines are swept over as many settings
#: or more, and a coarser grid leaves gaps in the learned front that linear interpolation
#: (what mixing two prices per query achieves) fills below the policy's own points.
LEARNED_GRID_POINTS = 16


def lambda_grid(lambda_range: tuple[float, float] | list[float],
                values: tuple[float, ...] | None = None) -> tuple[float, ...]:
    """The prices a learned policy is evaluated at, increasing.

    ``values`` if given; else :data:`LEARNED_GRID_POINTS` log-spaced over ``lambda_range``
    (with a lower end of 0: 0, then one fewer log-spaced from ``high / 1000`` to ``high``;
    one value when the range is a point). Values are rounded to 6 significant digits, as
    reports print them.
    """
    if values is not None:
        return tuple(sorted({float(v) for v in values}))
    low, high = (float(v) for v in lambda_range)
    if high <= low:
        return (low,)
    points = LEARNED_GRID_POINTS
    count, start = (points - 1, high / 1000.0) if low == 0 else (points, low)
    ratio = (high / start) ** (1.0 / (count - 1))
    grid = {start * ratio**k for k in range(count - 1)} | {high} | ({0.0} if low == 0 else set())
    return tuple(sorted(float(f"{v:.6g}") for v in grid))

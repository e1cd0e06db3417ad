"""Adaptive repetitions: repeat a measurement until its confidence interval is tight enough.

The interval is Student's t on the mean of the repetitions (they are independent windows of
the same work). A cell stops at the first repetition count ``n >= min_repetitions`` whose
relative half-width is within the target, or at ``max_repetitions`` or ``max_duration_s``
(then it is recorded as not reached, with the interval it did reach).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

_Repetition = TypeVar("_Repetition")


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values, their sample standard deviation and the mean's two-sided
    ``confidence`` interval."""

    n: int
    mean: float
    stdev: float
    low: float
    high: float
    confidence: float

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width over the mean; infinite while it cannot be computed."""
        if self.n < 2 or self.mean == 0 or not math.isfinite(self.high - self.low):
            return math.inf
        return (self.high - self.low) / 2 / abs(self.mean)

    @property
    def cv(self) -> float:
        """Coefficient of variation of the values (sample standard deviation over the mean)."""
        return math.nan if self.n < 2 or self.mean == 0 else self.stdev / abs(self.mean)


def t_interval(values: list[float], confidence: float = 0.95) -> Interval:
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    if n < 2:
        return Interval(n, mean, math.nan, -math.inf, math.inf, confidence)
    from scipy import stats  # ~0.4 s to import: not at start-up of every kedro run

    stdev = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * stdev / math.sqrt(n)
    return Interval(n, mean, stdev, mean - half, mean + half, confidence)


@dataclass(frozen=True)
class RepeatedMeasurement(Generic[_Repetition]):
    repetitions: list[_Repetition]
    interval: Interval
    target: float
    reached: bool
    stopped_by: str  # "target", "max_repetitions" or "max_duration"


def repeat_until_precise(
    measure_once: Callable[[int], _Repetition],
    value_of: Callable[[_Repetition], float],
    target: float,
    confidence: float,
    min_repetitions: int,
    max_repetitions: int,
    max_duration_s: float,
) -> RepeatedMeasurement[_Repetition]:
    """Call ``measure_once(index)`` until the interval of ``value_of`` over the results is within
    ``target`` (relative half-width), or a cap is hit."""
    started = time.monotonic()
    repetitions: list[_Repetition] = []
    values: list[float] = []
    while True:
        repetition = measure_once(len(repetitions))
        repetitions.append(repetition)
        values.append(value_of(repetition))
        interval = t_interval(values, confidence)
        if len(values) >= min_repetitions and interval.relative_half_width <= target:
            stopped_by = "target"
        elif len(values) >= max_repetitions:
            stopped_by = "max_repetitions"
        elif len(values) >= min_repetitions and time.monotonic() - started >= max_duration_s:
            stopped_by = "max_duration"
        else:
            continue
        return RepeatedMeasurement(repetitions, interval, target, stopped_by == "target", stopped_by)

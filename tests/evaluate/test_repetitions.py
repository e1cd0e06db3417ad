import itertools
import math

import numpy as np
import pytest
from scipy import stats

from green_deploy.evaluate.repetitions import repeat_until_precise, t_interval


def test_t_interval_is_students_t_on_the_mean():
    values = [1.0, 2.0, 3.0, 4.0]
    interval = t_interval(values, 0.95)
    low, high = stats.t.interval(0.95, 3, loc=2.5, scale=stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert interval.relative_half_width == pytest.approx((high - low) / 2 / 2.5)
    assert interval.cv == pytest.approx(np.std(values, ddof=1) / 2.5)


def test_one_value_has_no_interval():
    interval = t_interval([5.0])
    assert interval.n == 1 and math.isinf(interval.relative_half_width) and math.isnan(interval.cv)


def _run(values, **overrides):
    source = iter(values)
    settings = {
        "target": 0.05,
        "confidence": 0.95,
        "min_repetitions": 3,
        "max_repetitions": 10,
        "max_duration_s": 60,
    }
    return repeat_until_precise(lambda i: next(source), float, **{**settings, **overrides})


def test_a_steady_cell_stops_at_the_minimum_with_the_target_reached():
    result = _run(itertools.repeat(1.0))
    assert len(result.repetitions) == 3 and result.reached and result.stopped_by == "target"


def test_a_noisy_cell_repeats_until_its_interval_is_within_the_target():
    noisy = [1.0, 1.3, 0.7, *[1.02, 0.98] * 30]
    result = _run(noisy, max_repetitions=len(noisy))
    assert result.reached and 3 < len(result.repetitions) < len(noisy)
    assert result.interval.relative_half_width <= 0.05
    # no shorter prefix (of at least the minimum) was precise enough
    assert all(t_interval(noisy[:n]).relative_half_width > 0.05 for n in range(3, len(result.repetitions)))


def test_a_cell_that_never_settles_stops_at_the_cap_and_says_so():
    result = _run(itertools.cycle([1.0, 2.0]), max_repetitions=6)
    assert len(result.repetitions) == 6 and not result.reached and result.stopped_by == "max_repetitions"
    assert result.interval.relative_half_width > 0.05


def test_the_time_cap_ends_a_cell_after_the_minimum():
    result = _run(itertools.cycle([1.0, 2.0]), max_duration_s=0.0)
    assert len(result.repetitions) == 3 and result.stopped_by == "max_duration" and not result.reached

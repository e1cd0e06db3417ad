"""Verdicts on planted effects: a 10% regression is found, a study against itself is equivalent,
a noisy pair is inconclusive (with the repetitions that would decide it), and with nothing
changed the false "regressed" rate over 200 comparisons stays at the nominal level."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.compare.verdicts import (
    EQUIVALENT,
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    holm,
    verdicts,
)


def _repetitions(rng, mean_j: float, cv: float, n: int) -> np.ndarray:
    return mean_j * np.exp(rng.normal(0.0, cv, n))


def test_a_ten_percent_regression_is_found_and_a_ten_percent_saving_too():
    rng = np.random.default_rng(0)
    base = _repetitions(rng, 0.010, 0.02, 10)
    (worse, better) = verdicts(
        [
            ("m/v/local/bs1/cpu", base, _repetitions(rng, 0.011, 0.02, 10)),
            ("m/v/local/bs32/cpu", base, _repetitions(rng, 0.009, 0.02, 10)),
        ]
    )
    assert (
        worse.verdict == REGRESSED and worse.ratio_low > 1.05 and worse.ratio == pytest.approx(1.1, rel=0.03)
    )
    assert better.verdict == IMPROVED and better.ratio_high < 0.95


def test_a_study_against_itself_is_equivalent():
    rng = np.random.default_rng(1)
    cells = [(f"cell{i}", r, r) for i, r in enumerate(_repetitions(rng, 0.01, 0.03, 8) for _ in range(5))]
    assert {v.verdict for v in verdicts(cells)} == {EQUIVALENT}


def test_a_small_real_change_inside_the_margin_is_equivalent():
    rng = np.random.default_rng(2)
    (verdict,) = verdicts([("c", _repetitions(rng, 1.0, 0.005, 20), _repetitions(rng, 1.02, 0.005, 20))])
    assert verdict.verdict == EQUIVALENT and verdict.p_regressed < 0.05  # real, and too small to matter


def test_a_noisy_pair_is_inconclusive_and_says_how_many_repetitions_would_decide():
    rng = np.random.default_rng(3)
    (verdict,) = verdicts([("c", _repetitions(rng, 1.0, 0.3, 4), _repetitions(rng, 1.0, 0.3, 4))])
    assert verdict.verdict == INCONCLUSIVE
    assert verdict.repetitions_needed is not None and verdict.repetitions_needed > 4


def test_false_regressions_stay_within_the_nominal_level_when_nothing_changed():
    """200 comparisons of 10 cells each, nothing changed: Holm keeps the chance of any false
    'regressed' among a comparison's cells at 5%; its 95% binomial bound is about 8%."""
    rng = np.random.default_rng(4)
    false_alarms = 0
    for _ in range(200):
        cells = [
            (f"c{i}", _repetitions(rng, 0.01, 0.1, 6), _repetitions(rng, 0.01, 0.1, 6)) for i in range(10)
        ]
        false_alarms += any(v.verdict == REGRESSED for v in verdicts(cells))
    assert false_alarms / 200 <= 0.08


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="margin"):
        verdicts([("c", [1.0, 1.1], [1.0, 1.1])], margin=0.0)
    with pytest.raises(ValueError, match="at least 2 repetitions"):
        verdicts([("c", [1.0], [1.0, 1.1])])


def test_cells_that_move_between_runs_are_not_called_changed_but_a_large_change_still_is():
    """20 cells, each moved by its own ~10% between runs (tight repetitions cannot see it), and
    three cells really doubled: the scatter is estimated from the cells despite the three, and
    only the three are regressed."""
    from green_deploy.compare.verdicts import between_run_scatter

    rng = np.random.default_rng(5)
    cells = []
    for i in range(20):
        base = _repetitions(rng, 0.01, 0.01, 6)
        moved = 0.01 * np.exp(rng.normal(0, 0.1)) * (2.0 if i < 3 else 1.0)
        cells.append((f"c{i:02d}", base, _repetitions(rng, moved, 0.01, 6)))
    scatter = between_run_scatter(cells)
    assert 0.05 < scatter < 0.2
    found = {v.key for v in verdicts(cells, scatter=scatter) if v.verdict == REGRESSED}
    assert found == {"c00", "c01", "c02"}
    without = {v.key for v in verdicts(cells) if v.verdict == REGRESSED}
    assert len(without) > 3  # the scatter alone reads as changes when ignored
    assert between_run_scatter(cells[:5]) is None  # too few cells to tell

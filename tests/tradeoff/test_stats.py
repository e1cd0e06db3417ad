"""The tests on data with known answers: a planted effect is found with the right direction and
size, no effect is not, too few values are not tested, and the design picks the test."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.tradeoff import stats
from green_deploy.tradeoff.stats import (
    MIN_PER_GROUP,
    cliffs_delta,
    compare_groups,
    compare_paired,
    compare_unpaired,
    magnitude,
    vargha_delaney_a12,
)

RNG = np.random.default_rng(42)


def skewed(n: int, scale: float = 1.0, rng: np.random.Generator = RNG) -> np.ndarray:
    """Energy-like values: log-normal, so the rank tests are chosen."""
    return rng.lognormal(0.0, 0.6, n) * scale


def test_effect_sizes_on_hand_computed_samples():
    a, b = [1, 2, 3], [2, 3, 4]
    # pairs (a_i, b_j): b > a in 6 of 9, b < a in 1, ties 2
    assert cliffs_delta(a, b) == pytest.approx(5 / 9)
    assert vargha_delaney_a12(a, b) == pytest.approx(6 / 9 + 1 / 9)
    assert cliffs_delta(b, a) == pytest.approx(-5 / 9)
    assert [magnitude(d) for d in (0.1, -0.2, 0.4, -0.9)] == ["negligible", "small", "medium", "large"]


def test_a_planted_halving_is_found_paired():
    baseline = skewed(20)
    optimized = baseline * 0.5 * RNG.uniform(0.9, 1.1, 20)
    result = compare_paired(baseline, optimized)
    assert result.significant and result.test in ("Wilcoxon signed-rank", "paired t-test")
    assert result.difference < 0 and result.difference_ci[1] < 0
    assert result.cliffs_delta < 0 and result.magnitude in ("medium", "large")


def test_no_effect_is_found_about_as_often_as_alpha_says(monkeypatch):
    """200 pairs of samples from one distribution: about 5% rejected, and the interval of the
    difference covers 0 about 95% of the time."""
    monkeypatch.setattr(stats, "BOOTSTRAP_RESAMPLES", 300)
    rng = np.random.default_rng(7)
    results = [compare_unpaired(skewed(20, rng=rng), skewed(20, rng=rng), seed=i) for i in range(200)]
    # mostly the rank test: a skewed sample of 20 sometimes passes Shapiro-Wilk
    assert "Mann-Whitney U" in {r.test for r in results}
    rejected = np.mean([r.significant for r in results])
    covered = np.mean([r.difference_ci[0] <= 0 <= r.difference_ci[1] for r in results])
    assert 0.01 <= rejected <= 0.10
    assert covered >= 0.88


def test_normal_samples_get_the_t_test():
    a, b = RNG.normal(10, 1, 40), RNG.normal(11, 1, 40)
    result = compare_unpaired(a, b)
    assert result.test == "Welch's t-test" and result.significant and result.cliffs_delta > 0


def test_too_few_values_are_described_not_tested():
    result = compare_unpaired(skewed(MIN_PER_GROUP - 1), skewed(10, 3.0))
    assert result.test is None and result.p_value is None and not result.significant
    assert "too few" in result.note
    assert result.cliffs_delta is not None  # the effect is still described


def test_paired_samples_must_match():
    with pytest.raises(ValueError, match="equal lengths"):
        compare_paired([1.0, 2.0], [1.0])


def test_one_planted_group_among_three_is_found_by_dunn():
    groups = {"pruning": skewed(15), "fp16": skewed(15), "int8": skewed(15, 0.2), "tiny": skewed(3)}
    result = compare_groups(groups)
    assert result.test == "Kruskal-Wallis" and result.significant
    assert "tiny" in result.note
    by_pair = {(p.first, p.second): p for p in result.pairs}
    assert by_pair[("pruning", "int8")].p_adjusted < 0.05 and by_pair[("fp16", "int8")].p_adjusted < 0.05
    assert by_pair[("pruning", "fp16")].p_adjusted > 0.05
    assert by_pair[("pruning", "int8")].cliffs_delta < 0  # int8 lower


def test_groups_without_an_effect_have_no_post_hoc():
    result = compare_groups({name: skewed(15) for name in ("a", "b", "c")})
    assert not result.significant and result.pairs == []

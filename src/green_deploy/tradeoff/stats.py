"""Hypothesis tests and effect sizes for the study's research questions.

The design decides the test: the same variants measured under two conditions (e.g. each
model's baseline against its fp16 variant) are **paired**; independent groups (e.g. PyTorch
variants against TensorFlow variants) are **unpaired**; three or more groups (techniques,
providers) go to Kruskal-Wallis with Dunn's post-hoc test, Bonferroni-corrected. A Shapiro-Wilk
check on each group (or on the paired differences) picks the parametric test (paired or Welch's
t) when every one looks normal, the rank test otherwise; energy figures are usually skewed, so
the rank tests are the common case. Effect sizes are rank-based whatever the test (Cliff's delta
and Vargha-Delaney A12, with Romano et al.'s magnitude thresholds; for paired samples they count
within pairs, so differences between units do not drown the effect), and every comparison carries
a bootstrap 95% interval of the median difference. With fewer than ``MIN_PER_GROUP`` values in a
group nothing is tested, and the result says so.

scipy supplies the tests, scikit-posthocs the Dunn test; this module only chooses and reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike

MIN_PER_GROUP = 5
ALPHA = 0.05
# Romano et al. (2006): |delta| < 0.147 negligible, < 0.33 small, < 0.474 medium, else large
MAGNITUDES = ((0.147, "negligible"), (0.33, "small"), (0.474, "medium"))
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Comparison:
    """Two samples compared: which test, its p-value, the effect size and an interval.

    ``difference`` is the median of ``b - a`` (paired) or median(b) - median(a) (unpaired), with
    its bootstrap 95% interval; ``cliffs_delta`` > 0 and ``a12`` > 0.5 mean ``b`` tends larger.
    ``test`` is ``None`` when there were too few values, and ``note`` says why.
    """

    design: str
    n: tuple[int, int]
    test: str | None
    statistic: float | None
    p_value: float | None
    normal: bool | None
    cliffs_delta: float | None
    a12: float | None
    magnitude: str | None
    difference: float | None
    difference_ci: tuple[float, float] | None
    note: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass(frozen=True)
class GroupComparison:
    """Three or more groups: the omnibus test and, when it rejects, every pair after it."""

    n: dict[str, int]
    test: str | None
    statistic: float | None
    p_value: float | None
    medians: dict[str, float]
    pairs: list[PairwiseResult] = field(default_factory=list)
    note: str = ""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass(frozen=True)
class PairwiseResult:
    first: str
    second: str
    p_adjusted: float
    cliffs_delta: float
    a12: float
    magnitude: str


def cliffs_delta(a: ArrayLike, b: ArrayLike) -> float:
    """P(b > a) - P(b < a) over all pairs, in [-1, 1]."""
    x, y = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float(np.mean(y > x) - np.mean(y < x))


def vargha_delaney_a12(a: ArrayLike, b: ArrayLike) -> float:
    """P(b > a) + P(b = a) / 2: the probability that a value of ``b`` beats one of ``a``."""
    x, y = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float(np.mean(y > x) + 0.5 * np.mean(y == x))


def magnitude(delta: float) -> str:
    for threshold, label in MAGNITUDES:
        if abs(delta) < threshold:
            return label
    return "large"


def looks_normal(values: ArrayLike) -> bool:
    """Shapiro-Wilk at ``ALPHA``; constant samples are not normal (nothing to fit)."""
    from scipy import stats

    values = np.asarray(values, float)
    if len(values) < 3 or np.ptp(values) == 0:
        return False
    return bool(stats.shapiro(values).pvalue > ALPHA)


def compare_paired(a: ArrayLike, b: ArrayLike, seed: int = 0) -> Comparison:
    """``a[i]`` and ``b[i]`` measured on the same unit (e.g. one model before and after)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    differences = b - a
    effect = _paired_effects(differences)
    interval = _bootstrap_ci(differences, np.median, seed)
    if len(a) < MIN_PER_GROUP:
        return _too_few("paired", (len(a), len(b)), effect, float(np.median(differences)), interval)
    if np.all(differences == 0):
        return Comparison(
            "paired",
            (len(a), len(b)),
            None,
            None,
            1.0,
            None,
            *effect,
            0.0,
            interval,
            "no difference in any pair",
        )
    normal = looks_normal(differences)
    result = stats.ttest_rel(b, a) if normal else stats.wilcoxon(b, a)
    return Comparison(
        "paired",
        (len(a), len(b)),
        "paired t-test" if normal else "Wilcoxon signed-rank",
        float(result.statistic),
        float(result.pvalue),
        normal,
        *effect,
        float(np.median(differences)),
        interval,
    )


def compare_unpaired(a: ArrayLike, b: ArrayLike, seed: int = 0) -> Comparison:
    """Independent samples (e.g. the variants of two frameworks)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    effect = _effects(a, b)
    interval = _bootstrap_ci((a, b), lambda x, y: np.median(y) - np.median(x), seed)
    difference = float(np.median(b) - np.median(a))
    if min(len(a), len(b)) < MIN_PER_GROUP:
        return _too_few("unpaired", (len(a), len(b)), effect, difference, interval)
    normal = looks_normal(a) and looks_normal(b)
    result = (
        stats.ttest_ind(b, a, equal_var=False)
        if normal
        else stats.mannwhitneyu(b, a, alternative="two-sided")
    )
    return Comparison(
        "unpaired",
        (len(a), len(b)),
        "Welch's t-test" if normal else "Mann-Whitney U",
        float(result.statistic),
        float(result.pvalue),
        normal,
        *effect,
        difference,
        interval,
    )


def compare_groups(groups: Mapping[str, Sequence[float] | np.ndarray]) -> GroupComparison:
    """Kruskal-Wallis over every group with enough values, then Dunn's test (Bonferroni) on
    every pair when it rejects; groups with too few values are named in the note."""
    import pandas as pd
    import scikit_posthocs as sp
    from scipy import stats

    kept = {name: np.asarray(v, float) for name, v in groups.items() if len(v) >= MIN_PER_GROUP}
    dropped = sorted(set(groups) - set(kept))
    n = {name: len(v) for name, v in groups.items()}
    medians = {name: float(np.median(v)) for name, v in groups.items() if len(v)}
    note = f"left out with fewer than {MIN_PER_GROUP} values: {', '.join(dropped)}" if dropped else ""
    if len(kept) < 2:
        return GroupComparison(
            n, None, None, None, medians, note=_join(note, "fewer than two groups to compare")
        )
    if len({float(v) for values in kept.values() for v in values}) == 1:
        return GroupComparison(n, None, None, 1.0, medians, note=_join(note, "every value is equal"))
    statistic, p_value = stats.kruskal(*kept.values())
    pairs = []
    if p_value < ALPHA:
        long = pd.DataFrame(
            [(name, v) for name, values in kept.items() for v in values], columns=["group", "value"]
        )
        dunn = sp.posthoc_dunn(long, val_col="value", group_col="group", p_adjust="bonferroni")
        for first, second in combinations(kept, 2):
            delta = cliffs_delta(kept[first], kept[second])
            pairs.append(
                PairwiseResult(
                    first,
                    second,
                    float(dunn.loc[first, second]),
                    delta,
                    vargha_delaney_a12(kept[first], kept[second]),
                    magnitude(delta),
                )
            )
    return GroupComparison(n, "Kruskal-Wallis", float(statistic), float(p_value), medians, pairs, note)


def _effects(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None, str | None]:
    if not len(a) or not len(b):
        return None, None, None
    delta = cliffs_delta(a, b)
    return delta, vargha_delaney_a12(a, b), magnitude(delta)


def _paired_effects(differences: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """Cliff's delta and A12 within pairs: P(b > a) - P(b < a) and P(b > a) + P(b = a) / 2."""
    if not len(differences):
        return None, None, None
    delta = float(np.mean(differences > 0) - np.mean(differences < 0))
    return delta, float(np.mean(differences > 0) + 0.5 * np.mean(differences == 0)), magnitude(delta)


def _bootstrap_ci(data, statistic, seed: int) -> tuple[float, float] | None:
    """Percentile bootstrap 95% interval (scipy.stats.bootstrap); ``None`` below two values."""
    from scipy import stats

    samples = data if isinstance(data, tuple) else (data,)
    if min(len(s) for s in samples) < 2 or all(np.ptp(s) == 0 for s in samples):
        return None
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        paired=False,
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _too_few(
    design: str,
    n: tuple[int, int],
    effect: tuple[float | None, float | None, str | None],
    difference: float | None,
    interval: tuple[float, float] | None,
) -> Comparison:
    return Comparison(
        design,
        n,
        None,
        None,
        None,
        None,
        *effect,
        difference,
        interval,
        f"too few values to test (n = {n[0]} and {n[1]}; at least {MIN_PER_GROUP} each)",
    )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)

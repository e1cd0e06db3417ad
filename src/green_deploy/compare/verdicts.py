"""A verdict per matched cell of two studies: improved, equivalent, regressed or inconclusive.

Each cell's repetitions give its J/inference many times over; the change a candidate made is the
ratio of the two geometric means (J/inference is compared on the log scale, as everywhere in
this project), with Welch's t interval on the difference of the log means. Three tests per cell,
each against the equivalence margin ``m`` (default 5%):

- **equivalent** (TOST): both one-sided tests reject a change beyond the margin, i.e. the
  ``1 - 2 alpha`` interval of the ratio lies inside ``(1 / (1 + m), 1 + m)``;
- **regressed** / **improved**: a one-sided Welch test finds the ratio above / below 1, and the
  cell is not equivalent (a significant change smaller than the margin is equivalent: it is
  real, and too small to matter at that margin);
- **inconclusive** otherwise, with the repetitions per study that would decide it (the normal
  approximation of each test's power at 80%, from the pooled spread of the log repetitions).

Between-run drift: a shared machine's energy for the same work moves between runs, which the
repetitions of one run cannot see. Each study measures a fixed reference work
(``evaluate.reference``); the ratio of its energy between the studies (``Drift``) divides every
cell's ratio, and its uncertainty is added to each cell's. Beyond a shared drift, single cells
also move between runs more than their repetitions show (a server started anew, other tenants):
that scatter is estimated robustly from the comparison's own cells (``between_run_scatter``)
and added to every cell's variance, so a cell is called changed only beyond it.

Multiple comparisons: each family of p-values (regression, improvement, equivalence) over the
cells of one comparison is adjusted by Holm's method, so the chance of any false "regressed"
verdict among them stays at ``alpha`` when nothing changed. The verdicts know nothing of where
the studies came from (``compare.studies`` reads them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
DEFAULT_MARGIN = 0.05
POWER = 0.8
IMPROVED, EQUIVALENT, REGRESSED, INCONCLUSIVE = "improved", "equivalent", "regressed", "inconclusive"


@dataclass(frozen=True)
class LogTests:
    """One cell's two samples on the log scale and its unadjusted tests."""

    n_baseline: int
    n_candidate: int
    log_ratio: float
    standard_error: float
    degrees_of_freedom: float
    pooled_sd: float
    p_regressed: float
    p_improved: float
    p_equivalent: float


@dataclass(frozen=True)
class CellVerdict:
    """The verdict of one matched cell. ``ratio`` is candidate / baseline J/inference (geometric
    means of the repetitions) with its ``1 - alpha`` interval; p-values are Holm-adjusted over
    the comparison's cells; ``repetitions_needed`` (per study) is set when inconclusive."""

    key: str
    verdict: str
    ratio: float
    ratio_low: float
    ratio_high: float
    n_baseline: int
    n_candidate: int
    p_regressed: float
    p_improved: float
    p_equivalent: float
    margin: float
    repetitions_needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_tests(baseline: Sequence[float], candidate: Sequence[float], margin: float) -> LogTests:
    """Welch's tests of ``candidate`` against ``baseline`` repetitions (J/inference, > 0)."""
    a, b = np.log(np.asarray(baseline, float)), np.log(np.asarray(candidate, float))
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each study needs at least 2 repetitions of a cell, got {len(a)} and {len(b)}")
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    standard_error = math.sqrt(var_a + var_b)
    dof = (
        (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
        if standard_error > 0
        else math.inf
    )
    pooled_sd = math.sqrt(
        ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    )
    return _tests(len(a), len(b), float(b.mean() - a.mean()), standard_error, dof, pooled_sd, margin)


@dataclass(frozen=True)
class Drift:
    """How the machine's energy per unit of the same reference work moved from the baseline
    study to the candidate's (``evaluate.reference``), on the log scale, with its standard error
    and degrees of freedom (Welch, over both studies' reference repetitions)."""

    log_ratio: float
    standard_error: float
    degrees_of_freedom: float

    @classmethod
    def between(cls, baseline: Sequence[float], candidate: Sequence[float]) -> Drift:
        test = log_tests(baseline, candidate, DEFAULT_MARGIN)
        return cls(test.log_ratio, test.standard_error, test.degrees_of_freedom)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return _interval(self.log_ratio, self.standard_error, self.degrees_of_freedom, confidence)


def without_drift(test: LogTests, drift: Drift, margin: float) -> LogTests:
    """``test`` with the machine's drift divided out of its ratio and its uncertainty added."""
    return _widened(test, drift.log_ratio, drift.standard_error**2, drift.degrees_of_freedom, margin)


MIN_CELLS_FOR_SCATTER = 8


def between_run_scatter(
    cells: Sequence[tuple[str, Sequence[float], Sequence[float]]], drift: Drift | None = None
) -> float | None:
    """How much cells move between two runs beyond what their repetitions show (a standard
    deviation on the log scale): the robust spread of the cells' log ratios (1.4826 x their
    median absolute deviation, so changed cells barely move it) minus the typical within-run
    variance; 0 when the repetitions explain the spread; ``None`` with fewer than
    ``MIN_CELLS_FOR_SCATTER`` cells. It is not centred away: a change of every cell stays a change."""
    if len(cells) < MIN_CELLS_FOR_SCATTER:
        return None
    tests = [log_tests(base, cand, DEFAULT_MARGIN) for _, base, cand in cells]
    ratios = np.array([t.log_ratio - (drift.log_ratio if drift else 0.0) for t in tests])
    spread = 1.4826 * float(np.median(np.abs(ratios - np.median(ratios))))
    within = float(np.median([t.standard_error**2 for t in tests]))
    return math.sqrt(max(0.0, spread**2 - within))


def with_scatter(test: LogTests, scatter: float, n_cells: int, margin: float) -> LogTests:
    """``test`` with the between-run scatter's variance added (estimated from ``n_cells`` cells)."""
    return _widened(test, 0.0, scatter**2, n_cells - 1, margin)


def _widened(test: LogTests, shift: float, variance: float, dof: float, margin: float) -> LogTests:
    """``test`` with ``shift`` taken off its log ratio and an independent ``variance`` (known to
    ``dof`` degrees of freedom) added to its own (Welch-Satterthwaite for the sum)."""
    cell_var = test.standard_error**2
    terms = [v**2 / d for v, d in ((cell_var, test.degrees_of_freedom), (variance, dof)) if v > 0]
    total_dof = (cell_var + variance) ** 2 / sum(terms) if terms else math.inf
    return _tests(
        test.n_baseline,
        test.n_candidate,
        test.log_ratio - shift,
        math.sqrt(cell_var + variance),
        total_dof,
        test.pooled_sd,
        margin,
    )


def _tests(
    n_a: int, n_b: int, log_ratio: float, standard_error: float, dof: float, pooled_sd: float, margin: float
) -> LogTests:
    """The one-sided and TOST p-values of a log ratio with its standard error."""
    from scipy import stats

    bound = math.log1p(margin)
    if standard_error == 0.0:  # identical repetitions: the difference is known exactly
        exact = {True: 0.0, False: 1.0}
        return LogTests(
            n_a, n_b, log_ratio, 0.0, math.inf, pooled_sd,
            exact[log_ratio > 0], exact[log_ratio < 0], exact[abs(log_ratio) < bound],
        )  # fmt: skip
    t = stats.t(dof)
    return LogTests(
        n_baseline=n_a,
        n_candidate=n_b,
        log_ratio=log_ratio,
        standard_error=standard_error,
        degrees_of_freedom=dof,
        pooled_sd=pooled_sd,
        p_regressed=float(t.sf(log_ratio / standard_error)),
        p_improved=float(t.cdf(log_ratio / standard_error)),
        # TOST: the larger of the two one-sided p-values against -bound and +bound
        p_equivalent=float(
            max(t.sf((log_ratio + bound) / standard_error), t.cdf((log_ratio - bound) / standard_error))
        ),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error), in the order given."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted.tolist()


def verdicts(
    cells: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
    drift: Drift | None = None,
    scatter: float | None = None,
) -> list[CellVerdict]:
    """A verdict for each ``(key, baseline repetitions, candidate repetitions)``, each ratio
    divided by the machine's ``drift`` where the studies measured one, and the ``scatter`` of
    cells between runs (``between_run_scatter``) added to each cell's variance; see the module
    docstring."""
    if not 0 < margin < 1:
        raise ValueError(f"the equivalence margin must be in (0, 1), got {margin}")
    tests = [log_tests(base, cand, margin) for _, base, cand in cells]
    if drift is not None:
        tests = [without_drift(test, drift, margin) for test in tests]
    if scatter:
        tests = [with_scatter(test, scatter, len(cells), margin) for test in tests]
    regressed = holm([t.p_regressed for t in tests])
    improved = holm([t.p_improved for t in tests])
    equivalent = holm([t.p_equivalent for t in tests])
    results = []
    for (key, _, _), test, p_reg, p_imp, p_eq in zip(
        cells, tests, regressed, improved, equivalent, strict=True
    ):
        if p_eq < alpha:
            verdict = EQUIVALENT
        elif p_reg < alpha:
            verdict = REGRESSED
        elif p_imp < alpha:
            verdict = IMPROVED
        else:
            verdict = INCONCLUSIVE
        confidence = 1 - 2 * alpha if verdict == EQUIVALENT else 1 - alpha
        low, high = _interval(test.log_ratio, test.standard_error, test.degrees_of_freedom, confidence)
        results.append(
            CellVerdict(
                key=key,
                verdict=verdict,
                ratio=math.exp(test.log_ratio),
                ratio_low=low,
                ratio_high=high,
                n_baseline=test.n_baseline,
                n_candidate=test.n_candidate,
                p_regressed=p_reg,
                p_improved=p_imp,
                p_equivalent=p_eq,
                margin=margin,
                repetitions_needed=repetitions_needed(test, margin, alpha / len(cells))
                if verdict == INCONCLUSIVE
                else None,
            )
        )
    return results


def repetitions_needed(test: LogTests, margin: float, alpha: float, power: float = POWER) -> int:
    """Repetitions per study for 80% power: to show equivalence when the observed change is
    inside the margin, else to show the change itself (normal approximation, pooled spread)."""
    from scipy.stats import norm

    bound = math.log1p(margin)
    distance = bound - abs(test.log_ratio) if abs(test.log_ratio) < bound else abs(test.log_ratio)
    if distance <= 0 or test.pooled_sd == 0:
        return max(test.n_baseline, test.n_candidate)
    z = norm.ppf(1 - alpha) + norm.ppf(power if abs(test.log_ratio) >= bound else (1 + power) / 2)
    return max(2, math.ceil(2 * (z * test.pooled_sd / distance) ** 2))


def _interval(log_ratio: float, standard_error: float, dof: float, confidence: float) -> tuple[float, float]:
    """The ratio's two-sided ``confidence`` interval (Student's t on the log scale)."""
    from scipy import stats

    if standard_error == 0.0:
        return math.exp(log_ratio), math.exp(log_ratio)
    half = stats.t(dof).ppf(0.5 + confidence / 2) * standard_error
    return math.exp(log_ratio - half), math.exp(log_ratio + half)

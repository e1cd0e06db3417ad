"""What the federated / centralized comparison hinges on.

* One-at-a-time sensitivity: every number the model reads is set to a low and a high value (×0.5
  and ×2 of the scenario's, or a configured range, kept within the parameter's bounds) with the
  others held, and the federated / centralized ratio of energy (and of carbon) recorded; the two
  switches (``iid``, ``upload_only_new_data``) are flipped. A tornado plot shows the energy ratios.
* Crossovers: for each number, the values where federated and centralized cost the same, with
  the rest of the scenario held. The difference federated - centralized is sampled on a wide
  grid (×1/1000 to ×1000 of the scenario's value by default, log-spaced) and every sign change is
  refined by bisection; for a parameter the energy is linear in, that is the analytic root. Each
  becomes a decision rule: "federated costs less when learners_per_round < 11.7". Integer
  parameters are searched as continuous ones, so a threshold may fall between two integers.

Comparisons are over the scenario's whole life (``trainings`` trainings, see
``model.comparison``); with ``trainings: 1`` that is one training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.simulate.model import BOUNDS, Scenario, comparison, is_integer, numeric_parameters

SWITCHES = ("iid", "upload_only_new_data")
_BISECTION_STEPS = 200
_RELATIVE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class SensitivitySettings:
    """The ``simulate.sensitivity`` section. ``ranges`` and ``crossover_ranges`` map a parameter to
    ``[low, high]``, replacing the factors for it."""

    low_factor: float
    high_factor: float
    crossover_span: float
    crossover_points: int


@dataclass(frozen=True)
class Crossover:
    """Where federated and centralized cost the same as ``parameter`` varies (``metric``: energy
    or carbon), searched over ``[search_low, search_high]``; ``values`` is empty when they never
    do there. ``rule`` says when federated costs less."""

    parameter: str
    metric: str
    base_value: float
    values: tuple[float, ...]
    search_low: float
    search_high: float
    federated_cheaper: str
    rule: str


def parse_sensitivity(raw: Mapping[str, Any] | None) -> tuple[SensitivitySettings, dict, dict]:
    """The settings and the per-parameter ranges (``ranges``, ``crossover_ranges``).

    Raises:
        ConfigError: an unknown key or parameter, a factor or span that is not positive, or a
            range that is not ``[low, high]`` with low < high.
    """
    raw = dict(raw or {})
    ranges = _parse_ranges(raw.pop("ranges", None), "simulate.sensitivity.ranges")
    crossover_ranges = _parse_ranges(
        raw.pop("crossover_ranges", None), "simulate.sensitivity.crossover_ranges"
    )
    defaults = {"low_factor": 0.5, "high_factor": 2.0, "crossover_span": 1000.0, "crossover_points": 400}
    settings = parse_settings(SensitivitySettings, {**defaults, **raw}, "simulate.sensitivity")
    if not 0 < settings.low_factor < 1 < settings.high_factor or not math.isfinite(settings.high_factor):
        raise ConfigError(
            "simulate.sensitivity: need 0 < low_factor < 1 < high_factor, "
            f"got {settings.low_factor!r} and {settings.high_factor!r}"
        )
    if not settings.crossover_span > 1 or not math.isfinite(settings.crossover_span):
        raise ConfigError(
            f"simulate.sensitivity: crossover_span must be > 1, got {settings.crossover_span!r}"
        )
    if settings.crossover_points < 3:
        raise ConfigError(
            f"simulate.sensitivity: crossover_points must be at least 3, got {settings.crossover_points!r}"
        )
    return settings, ranges, crossover_ranges


def one_at_a_time(
    s: Scenario,
    low_factor: float = 0.5,
    high_factor: float = 2.0,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """One row per parameter: its low, base and high values and the federated / centralized
    energy and carbon ratios at each; ``swing`` is |energy ratio at high - at low|. Sorted by swing,
    largest first."""
    ranges = ranges or {}
    base_energy, base_carbon = _ratios(s)
    rows = []
    for name in numeric_parameters(s):
        base = getattr(s, name)
        low, high = ranges.get(name, (base * low_factor, base * high_factor))
        low, high = _clip(name, low), _clip(name, high)
        low_energy, low_carbon = _ratios(_with(s, name, low))
        high_energy, high_carbon = _ratios(_with(s, name, high))
        rows.append(
            _row(name, low, base, high, low_energy, base_energy, high_energy, low_carbon, high_carbon)
        )
    for name in SWITCHES:
        low_energy, low_carbon = _ratios(_with(s, name, False))
        high_energy, high_carbon = _ratios(_with(s, name, True))
        base = getattr(s, name)
        rows.append(
            _row(name, False, base, True, low_energy, base_energy, high_energy, low_carbon, high_carbon)
        )
    table = pd.DataFrame(rows)
    table["base_carbon_ratio"] = base_carbon
    for column in ("low_value", "base_value", "high_value"):
        table[column] = table[column].astype(float)
    return table.sort_values(["swing", "parameter"], ascending=[False, True], ignore_index=True)


def crossover(
    s: Scenario,
    parameter: str,
    metric: str = "energy",
    search: tuple[float, float] | None = None,
    span: float = 1000.0,
    points: int = 400,
) -> Crossover:
    """The values of ``parameter`` where federated and centralized cost the same (``metric``:
    ``"energy"`` or ``"carbon"``), within ``search`` (default: the scenario's value ×1/span to
    ×span, within the parameter's bounds), and the decision rule they give."""
    base = float(getattr(s, parameter))
    low, high = search if search is not None else _search_range(parameter, base, span)
    low, high = _clip(parameter, low, integer=False), _clip(parameter, high, integer=False)
    grid = np.geomspace(low, high, points) if low > 0 and high / low > 10 else np.linspace(low, high, points)

    def difference(value: float) -> float:
        fed, cen = comparison(_with(s, parameter, float(value)), metric)
        return fed - cen

    diffs = np.array([difference(v) for v in grid])
    scale = max(float(np.max(np.abs(diffs))), 1e-300)
    roots: list[float] = []
    for i in range(len(grid) - 1):
        a, b, da, db = grid[i], grid[i + 1], diffs[i], diffs[i + 1]
        if da == 0 and (not roots or not math.isclose(roots[-1], a)):
            roots.append(float(a))
        elif da * db < 0:
            roots.append(_bisect(difference, float(a), float(b), da))
    if diffs[-1] == 0 and (not roots or not math.isclose(roots[-1], grid[-1])):
        roots.append(float(grid[-1]))
    if float(np.ptp(diffs)) <= _RELATIVE_TOLERANCE * scale or scale == 1e-300:
        # the parameter moves neither side, or both by the same amount
        rule = (
            f"{parameter} does not change which costs less in {metric} "
            f"(federated costs {'less' if diffs[0] < 0 else 'more' if diffs[0] > 0 else 'the same'})"
        )
        return Crossover(parameter, metric, base, (), low, high, "unaffected", rule)
    cheaper = _federated_cheaper_intervals(difference, grid, roots)
    return Crossover(
        parameter, metric, base, tuple(roots), low, high, *_rule(parameter, metric, base, low, high, cheaper)
    )


def crossovers(
    s: Scenario,
    metrics: tuple[str, ...] = ("energy", "carbon"),
    ranges: Mapping[str, tuple[float, float]] | None = None,
    span: float = 1000.0,
    points: int = 400,
) -> list[Crossover]:
    """A crossover search for every numeric parameter and metric."""
    ranges = ranges or {}
    return [
        crossover(s, name, metric, ranges.get(name), span, points)
        for metric in metrics
        for name in numeric_parameters(s)
    ]


def crossover_table(found: list[Crossover]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "parameter": c.parameter,
                "metric": c.metric,
                "base_value": c.base_value,
                "crossover_value": c.values[0] if c.values else math.nan,
                "crossover_values": ", ".join(f"{v:.6g}" for v in c.values),
                "search_low": c.search_low,
                "search_high": c.search_high,
                "federated_cheaper": c.federated_cheaper,
                "rule": c.rule,
            }
            for c in found
        ]
    )


def tornado(sensitivity: pd.DataFrame, metric: str = "energy") -> Any:
    """A tornado plot of the federated / centralized ratio (log scale) as each parameter goes
    from its low to its high value; parity (ratio 1) and the scenario's ratio are marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low_col, high_col = f"low_{metric}_ratio", f"high_{metric}_ratio"
    base = float(sensitivity[f"base_{metric}_ratio"].iloc[0])
    data = sensitivity.assign(_swing=(sensitivity[high_col] - sensitivity[low_col]).abs())
    data = data.sort_values(["_swing", "parameter"], ascending=[True, False], ignore_index=True)
    figure, ax = plt.subplots(figsize=(9, 0.32 * len(data) + 1.6))
    y = np.arange(len(data))
    ax.barh(y, data[low_col] - base, left=base, color="#4c72b0", label="low value")
    ax.barh(y, data[high_col] - base, left=base, color="#dd8452", label="high value")
    ax.axvline(1.0, color="black", linewidth=1, label="federated = centralized")
    ax.axvline(base, color="grey", linestyle="--", linewidth=1, label=f"this scenario ({base:.3g})")
    ax.set_yticks(y, [_label(r.parameter, r.low_value, r.high_value) for r in data.itertuples()])
    ax.set_xscale("log")
    ax.set_xlabel(f"federated / centralized {metric}")
    ax.set_title(f"One-at-a-time sensitivity of the {metric} ratio")
    ax.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return figure


def _with(s: Scenario, name: str, value: Any) -> Scenario:
    """``s`` with parameter ``name`` (known only at run time) set to ``value``."""
    return replace(s, **{name: value})


def _ratios(s: Scenario) -> tuple[float, float]:
    fed_j, cen_j = comparison(s, "energy")
    fed_g, cen_g = comparison(s, "carbon")
    return _safe_ratio(fed_j, cen_j), _safe_ratio(fed_g, cen_g)


def _safe_ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf if a > 0 else math.nan


def _row(name, low, base, high, low_energy, base_energy, high_energy, low_carbon, high_carbon) -> dict:
    return {
        "parameter": name,
        "low_value": low,
        "base_value": base,
        "high_value": high,
        "low_energy_ratio": low_energy,
        "base_energy_ratio": base_energy,
        "high_energy_ratio": high_energy,
        "low_carbon_ratio": low_carbon,
        "high_carbon_ratio": high_carbon,
        "swing": abs(high_energy - low_energy),
    }


def _clip(name: str, value: float, integer: bool = True) -> float:
    low, high = BOUNDS[name]
    value = min(max(value, low), high)
    if integer and is_integer(name):
        return int(max(round(value), low))
    return float(value)


def _search_range(name: str, base: float, span: float) -> tuple[float, float]:
    low_bound, high_bound = BOUNDS[name]
    if base <= 0:
        return low_bound, max(1.0, low_bound + 1.0)
    low = max(base / span, low_bound)
    high = min(base * span, high_bound)
    return low, high


def _bisect(f, a: float, b: float, fa: float) -> float:
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (a + b)
        fm = f(mid)
        if fm == 0 or (b - a) <= _RELATIVE_TOLERANCE * max(abs(a), abs(b)):
            return mid
        if fa * fm < 0:
            b = mid
        else:
            a, fa = mid, fm
    return 0.5 * (a + b)


def _federated_cheaper_intervals(f, grid: np.ndarray, roots: list[float]) -> list[tuple[float, float]]:
    """The sub-ranges of the grid between roots where federated costs less."""
    edges = [float(grid[0]), *roots, float(grid[-1])]
    intervals: list[tuple[float, float]] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        middle = math.sqrt(a * b) if a > 0 else 0.5 * (a + b)
        if f(middle) < 0:
            if intervals and math.isclose(intervals[-1][1], a):
                intervals[-1] = (intervals[-1][0], b)
            else:
                intervals.append((a, b))
    return intervals


def _rule(
    name: str, metric: str, base: float, low: float, high: float, cheaper: list[tuple[float, float]]
) -> tuple[str, str]:
    now = f"(now {_short(base)})"
    if not cheaper:
        return (
            "never",
            f"federated costs more {metric} for any {name} in [{_short(low)}, {_short(high)}] {now}",
        )
    if cheaper == [(low, high)]:
        return (
            "always",
            f"federated costs less {metric} for any {name} in [{_short(low)}, {_short(high)}] {now}",
        )
    parts = []
    for a, b in cheaper:
        if math.isclose(a, low):
            parts.append(f"{name} < {_short(b)}")
        elif math.isclose(b, high):
            parts.append(f"{name} > {_short(a)}")
        else:
            parts.append(f"{_short(a)} < {name} < {_short(b)}")
    if len(cheaper) == 1 and math.isclose(cheaper[0][0], low):
        kind = "below"
    elif len(cheaper) == 1 and math.isclose(cheaper[0][1], high):
        kind = "above"
    else:
        kind = "between"
    return kind, f"federated costs less {metric} when {' or '.join(parts)} {now}"


def _label(name: str, low: float, high: float) -> str:
    if name in SWITCHES:
        return f"{name} (false – true)"
    return f"{name} ({_short(low)} – {_short(high)})"


def _short(value: float) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.3g}"


def _parse_ranges(raw: Any, where: str) -> dict[str, tuple[float, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must map parameter names to [low, high], got {raw!r}")
    ranges = {}
    for name, pair in raw.items():
        if name not in BOUNDS:
            raise ConfigError(f"{where}: unknown parameter {name!r}; known: {sorted(BOUNDS)}")
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair)
            or not pair[0] < pair[1]
        ):
            raise ConfigError(f"{where}.{name} must be [low, high] with low < high, got {pair!r}")
        ranges[name] = (float(pair[0]), float(pair[1]))
    return ranges

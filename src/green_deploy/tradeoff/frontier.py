"""Pareto fronts of energy against accuracy, and when an optimization pays its own energy back.

A variant is on the front when no other variant of the same model uses no more energy per
inference and scores no worse, with one of the two strictly better. "Accuracy" is the model's
metric (the table's ``metric`` column): where lower is better (bits per byte, perplexity), a
lower value scores better. Across models, figures are first made relative to each model's
baseline (energy ratio, accuracy change in points), so a small model's millijoules do not crowd
out a large one's.

Break-even: optimizing costs energy once (measured or estimated by the optimize pipeline); each
inference then saves the baseline's J/inference minus the variant's. The optimization has paid
for itself after cost / saving inferences; a variant that saves nothing never does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from green_deploy.zoo.baselines import BASELINE_VARIANT_IDS
from green_deploy.zoo.metrics import better_sign

J_PER_KWH = 3.6e6


def pareto_mask(costs: Sequence[float], benefits: Sequence[float]) -> np.ndarray:
    """True where no other point has cost <= and benefit >= with at least one strictly better.
    Equal points are all kept; NaN points are never on the front."""
    cost, benefit = np.asarray(costs, float), np.asarray(benefits, float)
    valid = ~(np.isnan(cost) | np.isnan(benefit))
    on_front = valid.copy()
    for i in np.flatnonzero(valid):
        others = (
            valid & (cost <= cost[i]) & (benefit >= benefit[i]) & ((cost < cost[i]) | (benefit > benefit[i]))
        )
        on_front[i] = not others.any()
    return on_front


def metric_signs(table: pd.DataFrame) -> pd.Series:
    """Per row, +1 where its metric is better higher and -1 where better lower
    (``zoo.metrics.better_sign``); +1 in a table without a ``metric`` column."""
    if "metric" not in table:
        return pd.Series(1.0, index=table.index)
    return table["metric"].map(better_sign)


def pareto_front(
    table: pd.DataFrame,
    cost: str = "energy_per_item_j",
    benefit: str = "accuracy",
    by: Sequence[str] = ("model_id",),
) -> pd.Series:
    """Per group of ``by``, whether each row is on its energy-accuracy front (a boolean Series)."""
    mask = np.zeros(len(table), dtype=bool)
    benefits = (table[benefit] * metric_signs(table)).to_numpy()
    for positions in table.groupby(list(by), sort=False).indices.values():
        mask[positions] = pareto_mask(table[cost].to_numpy()[positions], benefits[positions])
    return pd.Series(mask, index=table.index)


def relative_to_baseline(
    table: pd.DataFrame, baselines: Sequence[str] = BASELINE_VARIANT_IDS
) -> pd.DataFrame:
    """``energy_ratio`` (variant / its framework's baseline, same batch size and target) and
    ``accuracy_change_pp`` (percentage points, or 100 x the change of a metric that is no share;
    negative when the variant scores worse, which for bits per byte is higher) beside each row;
    rows without a baseline get NaN."""
    keys = ["model_id", "framework", "target", "device", "batch_size"]
    base = table[table.variant_id.isin(baselines)].set_index(keys)[["energy_per_item_j", "accuracy"]]
    joined = table.join(base, on=keys, rsuffix="_baseline")
    return joined.assign(
        energy_ratio=joined.energy_per_item_j / joined.energy_per_item_j_baseline,
        accuracy_change_pp=(joined.accuracy - joined.accuracy_baseline) * 100 * metric_signs(joined),
    ).drop(columns=["energy_per_item_j_baseline", "accuracy_baseline"])


@dataclass(frozen=True)
class BreakEven:
    """When the energy spent optimizing is repaid by cheaper inferences.

    ``inferences`` is ``inf`` when the variant saves nothing per inference; ``carbon_g`` is the
    optimization's footprint at the given intensity (None without one).
    """

    optimization_energy_j: float
    saving_per_inference_j: float
    inferences: float
    carbon_g: float | None

    @property
    def repaid(self) -> bool:
        return math.isfinite(self.inferences)


def break_even(
    optimization_energy_j: float,
    baseline_j_per_inference: float,
    variant_j_per_inference: float,
    intensity_g_per_kwh: float | None = None,
) -> BreakEven:
    """The inferences after which optimizing has saved more energy (and, at one grid intensity
    for both, more CO2e) than it cost."""
    if optimization_energy_j < 0:
        raise ValueError(f"optimization energy must be >= 0, got {optimization_energy_j}")
    saving = baseline_j_per_inference - variant_j_per_inference
    inferences = optimization_energy_j / saving if saving > 0 else math.inf
    carbon = None if intensity_g_per_kwh is None else optimization_energy_j / J_PER_KWH * intensity_g_per_kwh
    return BreakEven(optimization_energy_j, saving, inferences, carbon)


def cumulative_energy_j(
    optimization_energy_j: float, j_per_inference: float, inferences: np.ndarray
) -> np.ndarray:
    """Energy spent after each number of ``inferences`` (the optimization up front): the
    break-even plot's curves (the baseline's with ``optimization_energy_j = 0``)."""
    return optimization_energy_j + j_per_inference * np.asarray(inferences, float)


def hypervolume_2d(energy: np.ndarray, accuracy: np.ndarray, reference: tuple[float, float]) -> float:
    """The area that the points dominate up to ``reference`` (energy at most, accuracy at least):
    energy is minimised and accuracy maximised; points outside the reference add nothing."""
    ref_energy, ref_accuracy = reference
    inside = (np.asarray(energy) < ref_energy) & (np.asarray(accuracy) > ref_accuracy)
    points = sorted(zip(np.asarray(energy)[inside], np.asarray(accuracy)[inside], strict=True))
    area, best_accuracy = 0.0, ref_accuracy
    for index, (e, a) in enumerate(points):
        best_accuracy = max(best_accuracy, a)
        next_energy = points[index + 1][0] if index + 1 < len(points) else ref_energy
        area += (next_energy - e) * (best_accuracy - ref_accuracy)
    return area

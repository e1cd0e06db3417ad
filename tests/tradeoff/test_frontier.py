from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from green_deploy.tradeoff.frontier import (
    break_even,
    cumulative_energy_j,
    hypervolume_2d,
    pareto_front,
    pareto_mask,
    relative_to_baseline,
)


def test_the_front_by_hand():
    # energy (lower is better), accuracy (higher is better)
    energy = [1.0, 2.0, 2.0, 3.0, 0.5, np.nan, 1.0]
    accuracy = [0.80, 0.90, 0.85, 0.90, 0.60, 0.99, 0.80]
    # 0 and 6 tie (both kept); 2 is beaten by 1; 3 by 1; 5 is NaN
    assert pareto_mask(energy, accuracy).tolist() == [True, True, False, False, True, False, True]


def test_fronts_are_per_model():
    table = pd.DataFrame(
        {
            "model_id": ["a", "a", "b", "b"],
            "energy_per_item_j": [1.0, 2.0, 10.0, 20.0],
            "accuracy": [0.9, 0.8, 0.5, 0.7],
        }
    )
    assert pareto_front(table).tolist() == [True, False, True, True]


def test_relative_to_the_same_frameworks_baseline():
    keys = {"framework": "torch", "target": "local", "device": "cpu", "batch_size": 1, "model_id": "m"}
    table = pd.DataFrame(
        [
            {**keys, "variant_id": "torch_baseline", "energy_per_item_j": 2.0, "accuracy": 0.90},
            {**keys, "variant_id": "pt_fp16", "energy_per_item_j": 0.5, "accuracy": 0.89},
            {
                **keys,
                "framework": "tensorflow",
                "variant_id": "tf_x",
                "energy_per_item_j": 1.0,
                "accuracy": 0.9,
            },
        ]
    )
    relative = relative_to_baseline(table)
    assert relative.energy_ratio.tolist()[:2] == [1.0, 0.25]
    assert relative.accuracy_change_pp.iloc[1] == pytest.approx(-1.0)
    assert math.isnan(relative.energy_ratio.iloc[2])  # no TensorFlow baseline in the table


def test_a_metric_better_lower_is_compared_the_other_way():
    keys = {"framework": "torch", "target": "local", "device": "cpu", "batch_size": 1, "model_id": "lm"}
    table = pd.DataFrame(
        [
            {**keys, "variant_id": "torch_baseline", "energy_per_item_j": 2.0, "accuracy": 3.0},
            {**keys, "variant_id": "cheap_worse", "energy_per_item_j": 1.0, "accuracy": 3.5},
            {**keys, "variant_id": "dear_worse", "energy_per_item_j": 3.0, "accuracy": 3.2},
        ]
    ).assign(metric="perplexity")
    # lower perplexity is better: the baseline and the cheaper variant are on the front
    assert pareto_front(table).tolist() == [True, True, False]
    assert relative_to_baseline(table).accuracy_change_pp.tolist() == pytest.approx([0.0, -50.0, -20.0])
    assert pareto_front(table.assign(metric="accuracy")).tolist() == [False, True, False]


def test_break_even_by_hand():
    # 3600 J to optimize; 0.010 - 0.004 = 0.006 J saved per inference -> 600,000 inferences
    result = break_even(3600.0, 0.010, 0.004, intensity_g_per_kwh=400.0)
    assert result.inferences == pytest.approx(600_000)
    assert result.carbon_g == pytest.approx(0.4)  # 1 Wh x 400 g/kWh
    assert result.repaid
    curves = cumulative_energy_j(3600.0, 0.004, [0, 600_000])
    assert curves.tolist() == pytest.approx([3600.0, cumulative_energy_j(0.0, 0.010, [600_000])[0]])


def test_a_variant_that_saves_nothing_never_breaks_even():
    result = break_even(100.0, 0.010, 0.012)
    assert result.inferences == math.inf and not result.repaid
    with pytest.raises(ValueError, match=">= 0"):
        break_even(-1.0, 1.0, 0.5)


def test_hypervolume_by_hand():
    # reference (energy 1.0, accuracy 0.5); points (0.2, 0.7) and (0.6, 0.9) dominate
    # [0.2, 0.6) x (0.5, 0.7] = 0.08 and [0.6, 1.0) x (0.5, 0.9] = 0.16; (1.2, 0.95) is beyond
    # the reference energy and (0.4, 0.6) is dominated by nothing it adds: it lies under the strip
    energy = np.array([0.6, 0.2, 1.2, 0.4])
    accuracy = np.array([0.9, 0.7, 0.95, 0.6])
    assert hypervolume_2d(energy, accuracy, (1.0, 0.5)) == pytest.approx(0.08 + 0.16)
    assert hypervolume_2d(energy[:1], accuracy[:1], (1.0, 0.5)) == pytest.approx(0.4 * 0.4)
    assert hypervolume_2d(energy, accuracy, (0.1, 0.5)) == 0.0

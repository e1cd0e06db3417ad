"""The objective's bookkeeping around a trial: objective values and constraint from the measured
cell, inapplicable choices pruned as infeasible (so samplers learn), the front of feasible trials."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from green_deploy.search.study import NOT_APPLICABLE_ATTR, SearchSettings, open_study, run_worker
from green_deploy.search.trial import (
    Measured,
    SearchObjective,
    TrialError,
    accuracy_drop,
    front_trials,
    objective_values,
)

BASELINE = {"energy_per_item_j": 0.010, "accuracy": 0.90, "latency_p50_ms": 2.0, "size_on_disk_bytes": 1000}


class FakeMeasurer:
    """Builds every variant but the ones with a quantization step, which 'do not apply'; a pruned
    variant costs half the baseline's energy and two points of accuracy."""

    def build(self, spec):
        if any(step.technique in ("dynamic_int8", "static_int8", "half_precision") for step in spec.steps):
            raise TrialError(f"{spec.technique} does not apply: no layer left")
        return spec

    def measure(self, spec):
        cheaper = bool(spec.steps)
        row = {
            **BASELINE,
            "energy_per_item_j": 0.005 if cheaper else 0.010,
            "accuracy": 0.88 if cheaper else 0.90,
            "metric": "accuracy",
            "steps": str(spec.steps),
            "cpu_source": "tdp_estimate",
            "energy_measured": False,
        }
        return Measured(spec, row, [])


def test_trials_get_values_constraint_figures_and_inapplicable_ones_are_pruned_infeasible(tmp_path):
    settings = SearchSettings.parse(
        {
            "storage": f"sqlite:///{tmp_path}/o.db",
            "sampler": "random",
            "max_accuracy_drop": 0.01,
            "space": {"pruning": ["none", "unstructured"], "quantization": ["none", "dynamic_int8"]},
        }
    )
    study = open_study(settings, "m")
    run_worker(study, SearchObjective(settings, FakeMeasurer()), n_trials=4, poll_s=0.01)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(complete) == 4
    for trial in complete:
        pruning = trial.params["pruning"] != "none"
        assert trial.values == pytest.approx([0.005, 0.88] if pruning else [0.010, 0.90])
        assert trial.user_attrs["energy_ratio"] == pytest.approx(0.5 if pruning else 1.0)
        assert trial.user_attrs["energy_sources"] == "cpu: tdp_estimate"
        # two points lost against one allowed: infeasible; the baseline itself: feasible
        assert trial.constraints["accuracy_drop"] == pytest.approx(0.01 if pruning else -0.01)
    assert pruned, "random sampling over 4 combinations meets a quantization within a few trials"
    for trial in pruned:
        assert trial.params["quantization"] == "dynamic_int8"
        assert "does not apply" in trial.user_attrs[NOT_APPLICABLE_ATTR]
        assert trial.constraints["accuracy_drop"] > 0


def test_the_front_keeps_feasible_completed_trials_no_other_beats():
    trials = pd.DataFrame(
        [
            {
                "number": 0,
                "state": "COMPLETE",
                "feasible": True,
                "variant_id": "a",
                "energy_per_item_j": 1.0,
                "accuracy": 0.9,
            },
            {
                "number": 1,
                "state": "COMPLETE",
                "feasible": True,
                "variant_id": "b",
                "energy_per_item_j": 0.5,
                "accuracy": 0.89,
            },
            {
                "number": 2,
                "state": "COMPLETE",
                "feasible": True,
                "variant_id": "c",
                "energy_per_item_j": 0.7,
                "accuracy": 0.85,
            },
            {
                "number": 3,
                "state": "COMPLETE",
                "feasible": False,
                "variant_id": "d",
                "energy_per_item_j": 0.1,
                "accuracy": 0.5,
            },
            {
                "number": 4,
                "state": "PRUNED",
                "feasible": None,
                "variant_id": "e",
                "energy_per_item_j": None,
                "accuracy": None,
            },
            {
                "number": 5,
                "state": "COMPLETE",
                "feasible": True,
                "variant_id": "b",
                "energy_per_item_j": 0.5,
                "accuracy": 0.89,
            },
        ]
    )
    assert list(front_trials(trials).number) == [1, 0]
    assert front_trials(pd.DataFrame()).empty
    assert optuna.__version__.startswith("5.")


def test_a_metric_better_lower_is_maximized_turned_and_its_drop_is_a_rise():
    baseline = {**BASELINE, "accuracy": 2.0, "metric": "bits_per_byte"}
    worse = {**baseline, "accuracy": 2.3, "energy_per_item_j": 0.004}
    assert accuracy_drop(baseline, worse) == pytest.approx(0.3)
    assert accuracy_drop(baseline, {**worse, "accuracy": 1.9}) == pytest.approx(-0.1)
    assert objective_values(worse, ("energy", "accuracy")) == pytest.approx([0.004, -2.3])
    trials = pd.DataFrame(
        [
            {"number": 0, "state": "COMPLETE", "feasible": True, "variant_id": "a", "energy_per_item_j": 1.0},
            {"number": 1, "state": "COMPLETE", "feasible": True, "variant_id": "b", "energy_per_item_j": 0.5},
        ]
    ).assign(accuracy=[2.0, 2.1], metric="bits_per_byte")
    assert list(front_trials(trials).number) == [1, 0]  # cheaper but worse: both on the front
    assert list(front_trials(trials.assign(accuracy=[2.1, 2.0])).number) == [1]  # cheaper and better

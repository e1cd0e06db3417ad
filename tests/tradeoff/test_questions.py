"""The research questions on a synthetic results table with planted answers: int8 halves energy
at no accuracy cost, pruning costs accuracy and saves nothing, TensorFlow takes 3x PyTorch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from green_deploy.tradeoff.questions import answer_all, search_answer

MODELS = [f"m{i}" for i in range(8)]


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for model in MODELS:
        size = rng.lognormal(0, 1)  # models differ by orders of magnitude: the log scale matters
        accuracy = rng.uniform(0.6, 0.95)
        for framework, factor, prefix in (("torch", 1.0, "pt"), ("tensorflow", 3.0, "tf")):
            variants = {
                f"{'torch' if framework == 'torch' else 'tensorflow'}_baseline": ("baseline", 1.0, 0.0, None),
                f"{prefix}_int8": ("dynamic_int8", 0.5, 0.0, 2.0),
                f"{prefix}_prune": ("magnitude_pruning", 1.0, -0.05, 20.0),
            }
            for variant, (technique, energy_factor, accuracy_change, optimization_j) in variants.items():
                for batch_size in (1, 32):
                    rows.append(
                        {
                            "model_id": model,
                            "variant_id": variant,
                            "framework": framework,
                            "technique": technique,
                            "target": "local",
                            "device": "cpu",
                            "batch_size": batch_size,
                            "energy_per_item_j": size
                            * factor
                            * energy_factor
                            * rng.uniform(0.97, 1.03)
                            / (1 + batch_size / 8),
                            "accuracy": accuracy + accuracy_change + rng.normal(0, 0.002),
                            "optimization_total_energy_j": optimization_j,
                            "optimization_duration_s": optimization_j,
                            "optimization_measured": False,
                        }
                    )
    return pd.DataFrame(rows)


def test_every_question_finds_what_was_planted():
    answers = {a.question: a for a in answer_all(_table())}
    assert list(answers) == ["RQ1.1", "RQ1.2", "RQ1.3", "RQ1.4", "RQ1.5", "RQ1.6", "RQ1.7"]

    rq11 = answers["RQ1.1"]
    assert rq11.tests["techniques"].significant and "estimates" in rq11.sentence

    rq12 = answers["RQ1.2"].tests["energy_per_item_j"]
    assert rq12.significant and rq12.cliffs_delta == 1.0  # TensorFlow higher in every pair
    assert "3.0" in answers["RQ1.2"].sentence

    energy = answers["RQ1.3"].tests
    assert energy["dynamic_int8"].significant and energy["dynamic_int8"].difference < 0
    assert not energy["magnitude_pruning"].significant
    accuracy = answers["RQ1.4"].tests
    assert accuracy["magnitude_pruning"].significant and accuracy["magnitude_pruning"].difference < 0
    assert not accuracy["dynamic_int8"].significant

    front = answers["RQ1.5"].table.set_index("technique")
    assert front.loc["dynamic_int8", "front_share"] > front.loc["magnitude_pruning", "front_share"]

    assert "Only the local target" in answers["RQ1.6"].sentence


def _on_targets(table: pd.DataFrame) -> pd.DataFrame:
    """The table on the local server (Germany's grid, PUE 1.0) and on a provider stack that
    costs 1.5x the J/inference (metered from outside alike) in a region with half the grid
    intensity and PUE 1.2; one variant scores differently there."""
    local = table.assign(
        server_energy_per_item_j=table.energy_per_item_j * 1.2,
        latency_p50_ms=10.0,
        throughput_items_per_s=100.0,
        region="localhost",
        pue=1.0,
        intensity_g_per_kwh=400.0,
    )
    stack = local.assign(
        target="azureml_server",
        server_energy_per_item_j=local.server_energy_per_item_j * 1.5,
        latency_p50_ms=12.0,
        throughput_items_per_s=80.0,
        region="westeurope",
        pue=1.2,
        intensity_g_per_kwh=200.0,
    )
    changed = (stack.model_id == "m3") & (stack.variant_id == "pt_int8")
    stack.loc[changed, "accuracy"] += 0.01
    return pd.concat([local, stack])


def test_targets_are_compared_on_the_same_metering_with_location_apart():
    answers = {a.question: a for a in answer_all(_on_targets(_table()))}
    rq16 = answers["RQ1.6"]
    test = rq16.tests["azureml_server"]
    assert test.significant and test.cliffs_delta == 1.0  # the stack costs more in every pair
    row = rq16.table.set_index("target").loc["azureml_server"]
    assert row["J/inference / local"] == pytest.approx(1.5)  # server_energy, not energy_per_item_j
    assert row["PUE ratio"] == pytest.approx(1.2) and row["grid ratio"] == pytest.approx(0.5)
    assert row["gCO2e / local"] == pytest.approx(1.5 * 1.2 * 0.5)
    assert row["latency p50 / local"] == pytest.approx(1.2)
    assert "server process trees, alike" in rq16.sentence
    assert "not the provider's" in rq16.sentence

    rq17 = answers["RQ1.7"]
    assert list(zip(rq17.table.model_id, rq17.table.variant_id, strict=True)) == [("m3", "pt_int8")]
    assert "m3/pt_int8 on azureml_server (+1.00 pp)" in rq17.sentence


def test_cells_under_load_answer_the_serving_configuration_and_nothing_else():
    """Cells with 16 clients at once: micro-batching off costs 2x the J/inference and serves 0.4x
    the items/s; the other questions read only the one-at-a-time cells."""
    table = _on_targets(_table())
    local = table[(table.target == "local") & (table.variant_id == "torch_baseline")]
    loaded = pd.concat(
        [
            local.assign(concurrency=16, server_energy_per_item_j=local.server_energy_per_item_j * 0.5),
            local.assign(
                concurrency=16,
                target="local_unbatched",
                server_energy_per_item_j=local.server_energy_per_item_j,
                throughput_items_per_s=40.0,
            ),
        ]
    )
    plain = {a.question: a for a in answer_all(table)}
    answers = {a.question: a for a in answer_all(pd.concat([table.assign(concurrency=1), loaded]))}
    rq16 = answers["RQ1.6"]
    assert (
        "Under load (16 clients at once): local_unbatched took 2.00x the J/inference of local"
        in rq16.sentence
    )
    assert "served 0.40x its items/s" in rq16.sentence
    row = rq16.table.set_index("target").loc["local_unbatched"]
    assert row["concurrency"] == 16 and row["throughput / local"] == pytest.approx(0.4)
    for question in ("RQ1.2", "RQ1.3", "RQ1.5", "RQ1.7"):
        assert answers[question].sentence == plain[question].sentence


def test_targets_without_outside_metering_compare_their_own_figures():
    table = _on_targets(_table())
    table.loc[table.target == "local", "server_energy_per_item_j"] = np.nan  # e.g. the in-process target
    rq16 = {a.question: a for a in answer_all(table)}["RQ1.6"]
    assert "as each target reported it" in rq16.sentence
    assert rq16.table.set_index("target").loc["azureml_server", "J/inference / local"] == pytest.approx(
        1.0, rel=0.05
    )


def test_accuracy_of_models_with_random_weights_is_left_out_of_the_accuracy_questions():
    """The GPU study's architectures carry random weights: their accuracy is chance, and an
    accuracy 'finding' on them would be noise. Energy questions keep every model."""
    table = _table()
    chance = table.model_id.isin(["m0", "m1"])
    table["accuracy_applicable"] = ~chance
    table.loc[chance & (table.technique == "dynamic_int8"), "accuracy"] += (
        0.3  # noise that would read as a gain
    )
    answers = {a.question: a for a in answer_all(table)}
    for question in ("RQ1.4", "RQ1.5"):
        assert "Left out: m0, m1 (random weights: their accuracy is chance)" in answers[question].sentence
    assert not answers["RQ1.4"].tests["dynamic_int8"].significant
    assert answers["RQ1.3"].table.cells.sum() == len(table[table.technique != "baseline"])

    table["accuracy_applicable"] = False
    answers = {a.question: a for a in answer_all(table)}
    assert answers["RQ1.4"].sentence.startswith("Not applicable: every model here (m0, m1, m2")
    assert answers["RQ1.4"].table.empty and answers["RQ1.3"].tests["dynamic_int8"].significant
    from green_deploy.tradeoff.report import figures

    drawn = {plot.name for plot in figures(table.assign(metric="accuracy"))}
    assert "energy_vs_accuracy" not in drawn and "technique_energy_ratio" in drawn


def test_a_tiny_study_is_answered_with_what_cannot_be_said():
    """One model, one framework, one variant: every question answers, none is tested."""
    table = _table()
    tiny = table[(table.model_id == "m0") & (table.framework == "torch") & (table.variant_id != "pt_prune")]
    answers = {a.question: a for a in answer_all(tiny)}
    assert "not tested" in answers["RQ1.1"].sentence
    assert "Only one framework" in answers["RQ1.2"].sentence
    assert not answers["RQ1.3"].tests["dynamic_int8"].significant  # 2 cells: too few
    assert "too few" in answers["RQ1.5"].sentence


def test_models_measured_in_one_framework_each_are_named_and_not_compared():
    """Own models come in one framework each: RQ1.2 names them, and no framework figure is drawn."""
    from green_deploy.tradeoff.report import figures

    table = _table()
    own = table[
        ((table.model_id == "m0") & (table.framework == "torch"))
        | ((table.model_id == "m1") & (table.framework == "tensorflow"))
    ]
    rq12 = next(a for a in answer_all(own) if a.question == "RQ1.2")
    assert "No model was measured in both PyTorch and TensorFlow" in rq12.sentence
    assert "measured in one framework only: m0 (PyTorch), m1 (TensorFlow)" in rq12.sentence
    assert "framework_ratio" not in {f.name for f in figures(own.assign(metric="accuracy"))}
    both = table[
        table.model_id.isin(["m0", "m2", "m3"]) | ((table.model_id == "m1") & (table.framework == "torch"))
    ]
    rq12 = next(a for a in answer_all(both) if a.question == "RQ1.2")
    assert rq12.tests and rq12.sentence.endswith("measured in one framework only: m1 (PyTorch).")


def test_the_report_is_one_self_contained_page():
    from green_deploy.tradeoff.report import figures, render_html, render_markdown

    table = _table().assign(metric="accuracy")
    answers, plots = answer_all(table), figures(table)
    assert {f.name for f in plots} == {
        "energy_vs_accuracy",
        "technique_energy_ratio",
        "framework_ratio",
        "break_even",
    }
    page = render_html(answers, plots, "study")
    assert page.count("<section") == 7 and page.count("data:image/png;base64,") == 4
    assert "src='http" not in page and "<script" not in page
    markdown = render_markdown(answers, "study")
    assert all(f"## RQ1.{i}" in markdown for i in range(1, 8))


def _front(table: pd.DataFrame) -> pd.DataFrame:
    """A search of m0 at batch 32: its baseline, one variant at 0.3x within a point of accuracy and
    one at 0.1x losing 10 points (not within the loss)."""
    base = table[(table.model_id == "m0") & (table.variant_id == "torch_baseline") & (table.batch_size == 32)]
    row = base.iloc[0].to_dict()
    found = [
        {**row, "source": "baseline", "trial_number": -1},
        {
            **row,
            "variant_id": "search_pt_a",
            "technique": "structured_pruning+dynamic_int8",
            "energy_per_item_j": 0.3 * row["energy_per_item_j"],
            "accuracy": row["accuracy"] - 0.005,
            "source": "search",
            "trial_number": 4,
        },
        {
            **row,
            "variant_id": "search_pt_b",
            "technique": "magnitude_pruning",
            "energy_per_item_j": 0.1 * row["energy_per_item_j"],
            "accuracy": row["accuracy"] - 0.10,
            "source": "search",
            "trial_number": 7,
        },
    ]
    return pd.DataFrame(found)


def test_the_search_answer_sets_its_front_beside_the_declared_variants():
    table = _table().assign(metric="accuracy")
    answer = search_answer(table, _front(table))
    assert answer is not None and answer.question == "Search"
    best = answer.table.set_index("source")
    assert best.loc["search", "variant_id"] == "search_pt_a"
    assert best.loc["search", "energy_ratio"] == pytest.approx(0.3)
    # int8 at 0.5x its framework's baseline with no loss; pruning loses 5 points
    assert best.loc["declared", "technique"] == "dynamic_int8"
    assert best.loc["declared", "energy_ratio"] == pytest.approx(0.5, abs=0.05)
    assert "search_pt_a" in answer.sentence and "0.30x" in answer.sentence
    assert search_answer(table, pd.DataFrame()) is None


def test_the_report_shows_the_search_front_when_there_is_one():
    from green_deploy.tradeoff.report import figures, render_html

    table = _table().assign(metric="accuracy")
    plots = figures(table, _front(table))
    assert "search_fronts" in {f.name for f in plots}
    answers = answer_all(table) + [search_answer(table, _front(table))]
    page = render_html(answers, plots, "study")
    assert "id='Search'" in page and page.count("data:image/png;base64,") == 5


def test_the_simulation_is_answered_with_its_decision_rules_once_it_has_run():
    from green_deploy.tradeoff.questions import simulation_answer

    common = {
        "link": "wifi",
        "iid": False,
        "j_per_batch_source": "configured",
        "carbon_g": 1.0,
        "energy_kwh": 1.0,
    }
    energy = pd.DataFrame(
        [
            {
                **common,
                "paradigm": "centralized",
                "trainings": 1,
                "energy_ratio_to_centralized": 1.0,
                "carbon_ratio_to_centralized": 1.0,
            },
            {
                **common,
                "paradigm": "federated",
                "trainings": 1,
                "energy_ratio_to_centralized": 1.7,
                "carbon_ratio_to_centralized": 1.6,
            },
            {
                **common,
                "paradigm": "centralized_continual",
                "trainings": 5,
                "energy_ratio_to_centralized": 1.0,
                "carbon_ratio_to_centralized": 1.0,
            },
            {
                **common,
                "paradigm": "federated_continual",
                "trainings": 5,
                "energy_ratio_to_centralized": 1.75,
                "carbon_ratio_to_centralized": 1.7,
            },
        ]
    )
    crossovers = pd.DataFrame(
        [
            {
                "parameter": "learners_per_round",
                "metric": "energy",
                "base_value": 20.0,
                "crossover_value": 11.5,
                "rule": "federated costs less energy when learners_per_round < 11.5",
            },
            {
                "parameter": "pue_device",
                "metric": "energy",
                "base_value": 1.0,
                "crossover_value": float("nan"),
                "rule": "federated costs more energy for any pue_device",
            },
        ]
    )
    answer = simulation_answer(energy, crossovers)
    assert "1.70x" in answer.sentence and "1.75x over 5 trainings" in answer.sentence
    assert "learners_per_round < 11.5" in answer.sentence and list(answer.table.parameter) == [
        "learners_per_round"
    ]
    assert simulation_answer(pd.DataFrame(), pd.DataFrame()) is None


def test_what_the_techniques_did_reads_as_a_sentence():
    from green_deploy.tradeoff.questions import _changes

    assert _changes("accuracy", [], [], 4) == "no technique changed accuracy significantly (4 tested)"
    assert _changes("J/inference", ["tflite", "onnx"], [], 3) == (
        "tflite and onnx lowered J/inference significantly; the other technique changed it by no significant amount"
    )
    assert _changes("accuracy", [], ["qat"], 1) == "qat raised accuracy significantly"
    assert _changes("accuracy", ["a"], ["b"], 2) == "a lowered accuracy significantly; b raised it"
    assert "none" not in _changes("accuracy", ["a"], [], 5)

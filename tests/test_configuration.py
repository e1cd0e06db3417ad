"""The project's two studies as configured: the quick default (conf/base) covers every technique
family in each framework and scores a subset; `--env full` is every declared variant on whole
splits, with its results kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from green_deploy.optimize.spec import parse_variants, planned_variants
from green_deploy.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"

# The families the quick study must keep (issue: "each technique family at least once per framework")
FAMILIES = {
    "torch": {
        "dynamic_int8",
        "static_int8",
        "half_precision",
        "magnitude_pruning",
        "structured_pruning",
        "semi_structured_sparsity",
        "onnx",
        "torch_compile",
    },
    "tensorflow": {"tflite", "tfmot_pruning", "tfmot_qat"},
}


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(str(CONF), env=env, **{k: v for k, v in CONFIG_LOADER_ARGS.items()})
    return loader["parameters"]


@pytest.fixture(scope="module")
def quick():
    return _parameters("local")


@pytest.fixture(scope="module")
def full():
    return _parameters("full")


def _planned(parameters) -> dict[str, set[str]]:
    """Each planned variant id with the models it is applied to."""
    optimize, models = parameters["optimize"], list(parameters["zoo"]["models"])
    declared = parse_variants(optimize["variants"])
    applied: dict[str, set[str]] = {}
    for model_id in models:
        for variant_id in planned_variants(declared, optimize["plan"], model_id, models):
            applied.setdefault(variant_id, set()).add(model_id)
    return applied


def test_the_quick_study_keeps_every_technique_family_in_each_framework(quick):
    declared = parse_variants(quick["optimize"]["variants"])
    planned = {variant_id: declared[variant_id] for variant_id in _planned(quick)}
    for framework, families in FAMILIES.items():
        used = {
            step.technique for spec in planned.values() if spec.framework == framework for step in spec.steps
        }
        assert families <= used, f"{framework}: missing {sorted(families - used)}"
    tflite = {
        spec.steps[0].settings["quantization"] for spec in planned.values() if spec.technique == "tflite"
    }
    assert "dynamic_int8" in tflite and tflite & {"full_int8", "float16"}


def test_each_quick_technique_has_the_pairs_its_tests_need(quick):
    # 5 models: 5 values per technique for RQ1.1, 10 pairs at 2 batch sizes for RQ1.3/RQ1.4; 2:4
    # fits 3 zoo models and QAT 2, in the full study too (fewer than 5 there as well)
    few = {"pt_2of4_ft": 3, "tf_qat_int8": 1}
    assert len(quick["evaluate"]["batch_sizes"]) == 2
    for variant_id, models in _planned(quick).items():
        assert len(models) >= few.get(variant_id, 5), variant_id


def test_the_quick_study_scores_a_subset_and_the_full_one_whole_splits(quick, full):
    assert quick["evaluate"]["accuracy_max_items"] == quick["zoo"]["test_max_items"] == 2000
    assert full["evaluate"]["accuracy_max_items"] is None and full["zoo"]["test_max_items"] is None


def test_the_full_study_builds_every_declared_variant_apart_from_the_quick_one(quick, full):
    full_plan, quick_plan = _planned(full), _planned(quick)
    assert len(full_plan) == len(full["optimize"]["variants"]) == 32  # 2 for ONNX own models only
    assert all(models == set(full["zoo"]["models"]) for models in full_plan.values())
    assert sum(map(len, quick_plan.values())) < sum(map(len, full_plan.values())) / 3
    assert full["evaluate"]["study"] != quick["evaluate"]["study"]
    for section, key in (("zoo", "models_dir"), ("optimize", "variants_dir"), ("evaluate", "work_dir")):
        assert quick[section][key].startswith("data/0") and full[section][key].startswith("data/full/0")
    # the full budgets: more training and fine-tuning than the quick study's
    assert (
        full["zoo"]["models"]["lstm_langid"]["training"]["epochs"]
        > quick["zoo"]["models"]["lstm_langid"]["training"]["epochs"]
    )
    full_steps = full["optimize"]["variants"]["pt_structured30"]["settings"]["finetune_steps"]
    assert full_steps > quick["optimize"]["variants"]["pt_structured30"]["settings"]["finetune_steps"]


def test_the_test_environment_still_loads_on_the_quick_base():
    parameters = _parameters("test")
    assert parameters["optimize"]["plan"] is None
    assert set(parameters["optimize"]["only"]) <= set(parameters["optimize"]["variants"])


def test_reading_names_for_the_pipelines_leaves_the_runs_globals_alone():
    from green_deploy.pipelines.configured import project_parameters, zoo_model_ids

    loader = OmegaConfigLoader(str(CONF), env="full", **CONFIG_LOADER_ARGS)  # the run's, made first
    assert zoo_model_ids(CONF.parent) and project_parameters(CONF.parent)["search"]["models"]
    # kedro run finds its pipelines (and reads these names) before it resolves its parameters
    assert loader["parameters"]["zoo"]["models_dir"] == "data/full/06_models/zoo"
    assert loader["catalog"]["variants"]["filepath"] == "data/full/07_model_output/variants.parquet"


def test_the_gpu_environment_is_its_four_realistic_models_and_every_gpu_technique(monkeypatch):
    from green_deploy.pipelines.configured import zoo_model_ids
    from green_deploy.zoo.spec import configured_models, parse_entry

    parameters = _parameters("gpu")
    models = configured_models(parameters["zoo"]["models"])
    assert sorted(models) == ["bert_base", "gpt2_code", "resnet50", "vit_b16"]
    assert all(
        parse_entry(m, raw).family == "huggingface" and "random weights" in raw["source"]
        for m, raw in models.items()
    )
    monkeypatch.setenv("KEDRO_ENV", "gpu")
    assert zoo_model_ids(CONF.parent) == sorted(models)  # the pipelines get nodes for these alone
    declared = parse_variants(parameters["optimize"]["variants"])
    only = [declared[v] for v in parameters["optimize"]["only"]]
    techniques = {step.technique for variant in only for step in variant.steps}
    assert {
        "fp8",
        "weight_only",
        "int8_dynamic",
        "cuda_graph",
        "semi_structured_sparsity",
        "half_precision",
    } <= techniques
    assert parameters["evaluate"]["devices"] == ["cuda"] and parameters["evaluate"]["batch_sizes"] == [
        1,
        32,
        256,
    ]

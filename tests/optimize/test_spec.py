from __future__ import annotations

import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.spec import parse_variant, parse_variants, planned_variants


def test_single_technique_and_chains_parse():
    single = parse_variant(
        "fp16", {"framework": "torch", "technique": "half_precision", "settings": {"dtype": "float16"}}
    )
    assert single.technique == "half_precision" and single.steps[0].settings == {"dtype": "float16"}
    chain = parse_variant(
        "p_q",
        {"framework": "torch", "steps": [{"technique": "magnitude_pruning"}, {"technique": "dynamic_int8"}]},
    )
    assert chain.technique == "magnitude_pruning+dynamic_int8"
    assert single.config_sha256() != chain.config_sha256()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"framework": "torch", "technique": "pruning"}, "unknown technique"),
        ({"framework": "torch", "technique": "tflite"}, "must start from it"),
        ({"framework": "onnx", "technique": "dynamic_int8"}, "must start from it"),
        ({"framework": "jax", "technique": "dynamic_int8"}, "framework"),
        ({"framework": "torch"}, "either technique"),
        ({"framework": "torch", "technique": "dynamic_int8", "setting": {}}, "unknown key"),
        (
            {"framework": "tensorflow", "steps": [{"technique": "tflite"}, {"technique": "tfmot_pruning"}]},
            "last step",
        ),
        (
            {"framework": "torch", "steps": [{"technique": "onnx"}, {"technique": "dynamic_int8"}]},
            "last step",
        ),
    ],
)
def test_bad_variants_are_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_variant("v", raw)


def test_only_selects_variants_by_list_or_string():
    from green_deploy.optimize.spec import parse_variants, select_variants

    variants = parse_variants(
        {
            "a": {"framework": "torch", "technique": "dynamic_int8"},
            "b": {"framework": "torch", "technique": "half_precision"},
        }
    )
    assert list(select_variants(variants, None)) == ["a", "b"]
    assert list(select_variants(variants, "b")) == ["b"]
    assert list(select_variants(variants, "b a")) == ["b", "a"]  # the form that survives kedro --params
    assert list(select_variants(variants, ["b", "a"])) == ["b", "a"]
    with pytest.raises(ConfigError, match="declared: a, b"):
        select_variants(variants, "c")


PLAN_VARIANTS = {
    "pt_bf16": {"framework": "torch", "technique": "half_precision", "settings": {"dtype": "bfloat16"}},
    "pt_dynamic_int8": {"framework": "torch", "technique": "dynamic_int8"},
    "tf_tflite_fp16": {
        "framework": "tensorflow",
        "technique": "tflite",
        "settings": {"quantization": "float16"},
    },
}
MODELS = ["resnet_fmnist", "lstm_langid", "vit_fmnist"]


def test_a_plan_applies_each_variant_to_its_models_only():
    declared = parse_variants(PLAN_VARIANTS)
    plan = {"pt_bf16": ["resnet_fmnist", "vit_fmnist"], "tf_tflite_fp16": "all"}
    assert list(planned_variants(declared, plan, "resnet_fmnist", MODELS)) == ["pt_bf16", "tf_tflite_fp16"]
    assert list(planned_variants(declared, plan, "lstm_langid", MODELS)) == ["tf_tflite_fp16"]
    assert list(planned_variants(declared, None, "lstm_langid", MODELS)) == list(PLAN_VARIANTS)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"pt_fp16": "all"}, "undeclared variant 'pt_fp16'"),
        ({"pt_bf16": ["resnet"]}, r"unknown model\(s\) \['resnet'\]"),
        ({"pt_bf16": "resnet_fmnist"}, "must be a list of zoo model ids or all"),
        (["pt_bf16"], "must map variant ids"),
    ],
)
def test_a_wrong_plan_is_a_clear_error(plan, message):
    with pytest.raises(ConfigError, match=message):
        planned_variants(parse_variants(PLAN_VARIANTS), plan, "resnet_fmnist", MODELS)

from __future__ import annotations

import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.spec import parse_variant


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
        ({"framework": "torch", "technique": "tflite"}, "match every step"),
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

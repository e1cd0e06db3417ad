"""A trial's choices become the optimize pipeline's recipe; the same choices, the same variant."""

from __future__ import annotations

import pytest
from optuna.trial import FixedTrial

from green_deploy.errors import ConfigError
from green_deploy.search.space import SearchSpace, suggest_variant

SPACE = SearchSpace(frameworks=("torch", "tensorflow"))


def _steps(spec):
    return [(s.technique, s.settings) for s in spec.steps]


def test_unstructured_pruning_with_kept_layers_then_dynamic_int8():
    params = {
        "framework": "torch",
        "pruning": "unstructured",
        "amount": 0.37,
        "finetune_steps": 50,
        "keep_layers": "first_and_output",
        "quantization": "dynamic_int8",
    }
    spec = suggest_variant(FixedTrial(params), SPACE)
    assert spec.framework == "torch"
    assert _steps(spec) == [
        (
            "magnitude_pruning",
            {
                "amount": 0.37,
                "scope": "global",
                "finetune_steps": 50,
                "keep_first_layer": True,
                "keep_output_layer": True,
            },
        ),
        ("dynamic_int8", {"keep_output_layer": True}),
    ]


def test_structured_pruning_then_half_precision():
    params = {
        "framework": "torch",
        "pruning": "structured",
        "amount": 0.5,
        "finetune_steps": 0,
        "quantization": "bfloat16",
    }
    spec = suggest_variant(FixedTrial(params), SPACE)
    assert _steps(spec) == [
        ("structured_pruning", {"amount": 0.5, "finetune_steps": 0}),
        ("half_precision", {"dtype": "bfloat16"}),
    ]


def test_an_onnx_graph_is_searched_over_onnx_runtime_quantization():
    space = SearchSpace(frameworks=("onnx",))
    spec = suggest_variant(FixedTrial({"onnx_quantization": "static_int8", "onnx_per_channel": False}), space)
    assert spec.framework == "onnx" and spec.variant_id.startswith("search_onnx_")
    assert _steps(spec) == [("onnx", {"quantization": "static_int8", "per_channel": False})]
    assert suggest_variant(FixedTrial({"onnx_quantization": "none"}), space).steps == ()  # the graph as given


def test_no_pruning_and_no_quantization_is_the_baseline():
    spec = suggest_variant(
        FixedTrial({"framework": "torch", "pruning": "none", "quantization": "none"}), SPACE
    )
    assert spec.steps == () and spec.framework == "torch"


def test_tensorflow_two_of_four_then_full_int8_tflite_fine_tunes_at_least_one_step():
    params = {
        "framework": "tensorflow",
        "tf_pruning": "2:4",
        "tf_finetune_steps": 25,
        "tf_quantization": "full_int8",
    }
    spec = suggest_variant(FixedTrial(params), SPACE)
    assert _steps(spec) == [
        ("tfmot_pruning", {"sparsity_m_by_n": [2, 4], "finetune_steps": 25}),
        ("tflite", {"quantization": "full_int8"}),
    ]
    # a range starting at 0 starts at one step of the grid for tfmot (it prunes in training steps)
    assert SPACE.finetune_steps[0] == 0
    with pytest.warns(UserWarning, match="out of the range"):
        suggest_variant(FixedTrial({**params, "tf_finetune_steps": 0}), SPACE)


def test_the_same_choices_name_the_same_variant_and_different_ones_do_not():
    params = {
        "framework": "torch",
        "pruning": "structured",
        "amount": 0.3,
        "finetune_steps": 25,
        "quantization": "none",
    }
    first = suggest_variant(FixedTrial(params), SPACE)
    assert suggest_variant(FixedTrial(params), SPACE).variant_id == first.variant_id
    other = suggest_variant(FixedTrial({**params, "amount": 0.31}), SPACE)
    assert other.variant_id != first.variant_id and other.variant_id.startswith("search_pt_")


def test_one_framework_is_not_a_parameter():
    spec = suggest_variant(FixedTrial({"pruning": "none", "quantization": "float16"}), SearchSpace())
    assert _steps(spec) == [("half_precision", {"dtype": "float16"})]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prunning": ["none"]}, "unknown key"),
        ({"pruning": ["magnitude"]}, "search.space.pruning"),
        ({"amount": [0.0, 0.5]}, "amount"),
        ({"finetune_steps": [10, 5]}, "finetune_steps"),
        ({"frameworks": ["jax"]}, "frameworks"),
    ],
)
def test_a_bad_space_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace.parse(raw)


def test_a_model_is_searched_in_the_frameworks_it_was_built_in():
    from green_deploy.search.space import space_for_model

    assert space_for_model(SPACE, "resnet_fmnist", ["torch", "tensorflow"]).frameworks == (
        "torch",
        "tensorflow",
    )
    assert space_for_model(SPACE, "own_keras", ["tensorflow"]).frameworks == ("tensorflow",)
    with pytest.raises(
        ConfigError, match=r"none of the frameworks own_onnx is built in \(\['onnx'\]\); add onnx"
    ):
        space_for_model(SPACE, "own_onnx", ["onnx"])

"""PyTorch techniques on tiny models: close to baseline, smaller where they should be, sparse as asked."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.techniques import get_technique
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_torch

RNG = np.random.default_rng(0)
CASES = {
    "vit": (
        {"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64},
        (RNG.random((8, 28, 28)) * 255).astype(np.uint8),
        10,
    ),
    "byte_lstm": (
        {"max_length": 32, "hidden_dim": 32},
        ["hello world", "bonjour à tous", "hola", "привет"] * 2,
        4,
    ),
}


def _setup(family_name):
    arch, examples, n_outputs = CASES[family_name]
    family = get_family(family_name)
    x = family.encode(examples, arch)
    model = family.build_torch(arch, n_outputs).eval()
    context = OptimizationContext(
        "tiny", family_name, "classification", arch, n_outputs, x, x, np.arange(len(x)) % n_outputs
    )
    return model, x, context


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family_name", sorted(CASES))
@pytest.mark.parametrize(("dtype", "atol"), [("float16", 5e-3), ("bfloat16", 5e-2)])
def test_half_precision_stays_close_and_halves_the_weights(family_name, dtype, atol):
    import torch

    model, x, context = _setup(family_name)
    before = _weights(model)
    result = get_technique("half_precision").apply(model, {"dtype": dtype}, context)
    np.testing.assert_allclose(predict_torch(result.model, x), predict_torch(model, x), atol=atol)
    half = [p for p in result.model.parameters() if p.is_floating_point()]
    assert all(p.dtype == getattr(torch, dtype) for p in half)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # baseline untouched
    assert "cpu" in result.devices


@pytest.mark.parametrize("scope", ["global", "local"])
def test_magnitude_pruning_reaches_the_asked_sparsity_and_keeps_the_output_layer(scope):
    from green_deploy.optimize.techniques.magnitude_pruning import prunable_weights

    model, x, context = _setup("vit")
    result = get_technique("magnitude_pruning").apply(model, {"amount": 0.6, "scope": scope}, context)
    pruned = [getattr(m, n) for m, n in prunable_weights(result.model, keep_output_layer=True)]
    zeros = sum(int((w == 0).sum()) for w in pruned)
    total = sum(w.numel() for w in pruned)
    assert zeros / total == pytest.approx(0.6, abs=0.01)
    if scope == "local":
        assert all(float((w == 0).float().mean()) == pytest.approx(0.6, abs=0.02) for w in pruned)
    assert int((result.model.classifier.weight == 0).sum()) == 0
    assert np.isfinite(predict_torch(result.model, x)).all()


def test_pruning_fine_tune_runs_and_needs_labels():
    model, x, context = _setup("vit")
    result = get_technique("magnitude_pruning").apply(model, {"amount": 0.5, "finetune_steps": 5}, context)
    assert np.isfinite(result.extra["finetune_loss"])
    unlabelled = OptimizationContext("tiny", "vit", "retrieval", {}, 0, x)
    with pytest.raises(NotApplicable, match="labelled"):
        get_technique("magnitude_pruning").apply(model, {"amount": 0.5, "finetune_steps": 5}, unlabelled)


@pytest.mark.parametrize("family_name", sorted(CASES))
def test_dynamic_int8_quantizes_linear_layers_for_cpu(family_name):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    model, x, context = _setup(family_name)
    result = get_technique("dynamic_int8").apply(model, {}, context)
    assert result.devices == ("cpu",)
    assert any(isinstance(m, DynamicLinear) for m in result.model.modules())
    baseline = predict_torch(model, x)
    np.testing.assert_allclose(predict_torch(result.model, x), baseline, atol=0.05 * np.abs(baseline).max())


@pytest.mark.parametrize(
    ("technique", "settings", "message"),
    [
        ("half_precision", {"dtype": "float8"}, "float16 or bfloat16"),
        ("magnitude_pruning", {"amount": 1.5}, "amount"),
        ("magnitude_pruning", {"scope": "layer"}, "scope"),
        ("magnitude_pruning", {"amout": 0.5}, "unknown setting"),
        ("dynamic_int8", {"backend": "nope"}, "backend"),
    ],
)
def test_bad_settings_are_config_errors(technique, settings, message):
    model, _, context = _setup("vit")
    with pytest.raises(ConfigError, match=message):
        get_technique(technique).apply(model, settings, context)


def test_a_model_without_linear_layers_is_not_applicable_for_dynamic_int8():
    from torch import nn

    _, x, context = _setup("vit")
    with pytest.raises(NotApplicable, match="no nn.Linear"):
        get_technique("dynamic_int8").apply(nn.Sequential(nn.Conv2d(1, 2, 3)), {}, context)

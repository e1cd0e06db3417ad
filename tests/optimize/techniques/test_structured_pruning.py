"""Structured pruning on tiny models: layers really shrink, MACs drop, outputs keep their shape,
whole heads go, the baseline is untouched, and a saved pruned model reloads exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.techniques import get_technique
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_torch

RNG = np.random.default_rng(0)
IMAGES = (RNG.random((16, 28, 28)) * 255).astype(np.uint8)
TEXTS = ["hello world", "bonjour à tous", "hola", "привет", "structured pruning", "heads"] * 2
CASES = {
    "resnet_cnn": ({"widths": [8, 16]}, IMAGES, 10),
    "vit": ({"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}, IMAGES, 10),
    "byte_transformer_lm": ({"context": 16, "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}, None, 0),
    "byte_lstm": ({"max_length": 16, "embedding_dim": 8, "hidden_dim": 16}, TEXTS, 4),
    "ngram_bag": ({"max_bytes": 16, "n_buckets": 512, "dim": 8}, TEXTS, 4),
}


def _setup(family_name):
    arch, examples, n_outputs = CASES[family_name]
    family = get_family(family_name)
    if family_name == "byte_transformer_lm":
        windows = RNG.integers(1, 256, size=(16, arch["context"] + 1))
        x, y = windows[:, :-1], windows[:, 1:]
    else:
        x = family.encode(examples, arch)
        y = np.arange(len(x)) % n_outputs
    model = family.build_torch(arch, n_outputs).eval()
    context = OptimizationContext("tiny", family_name, "task", arch, n_outputs, x, x, y)
    return family, model, x, context


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _prune(family_name, **settings):
    family, model, x, context = _setup(family_name)
    result = get_technique("structured_pruning").apply(model, {"amount": 0.5, **settings}, context)
    return family, model, x, context, result


@pytest.mark.parametrize("family_name", ["resnet_cnn", "vit", "byte_transformer_lm", "byte_lstm"])
def test_pruning_half_the_channels_shrinks_the_model_and_keeps_the_output_shape(family_name):
    _, model, x, _, result = _prune(family_name)
    extra = result.extra
    assert extra["macs_after"] < extra["macs_before"]
    assert extra["params_after"] < extra["params_before"]
    # Removing half of every coupled width roughly quarters the MACs of width x width layers.
    assert extra["macs_after"] <= 0.75 * extra["macs_before"]
    outputs = predict_torch(result.model, x)
    assert outputs.shape == predict_torch(model, x).shape
    assert np.isfinite(outputs).all()
    assert (result.framework, result.runtime, result.devices) == ("torch", "pytorch", ("cpu", "cuda"))
    assert "torch-pruning" in result.notes


def test_resnet_convolutions_lose_half_their_channels_and_the_classifier_keeps_its_outputs():
    _, model, _, _, result = _prune("resnet_cnn")
    assert result.model.stem[0].out_channels == 4
    assert result.model.blocks[-1].conv2.out_channels == 8
    assert result.model.classifier.out_features == model.classifier.out_features == 10
    assert result.model.classifier.in_features == 8


@pytest.mark.parametrize("family_name", ["vit", "byte_transformer_lm"])
def test_whole_heads_are_removed_consistently_from_query_key_value_and_output(family_name):
    import torch

    _, model, _, context = _setup(family_name)
    with torch.no_grad():  # distinct LayerNorm biases tell which residual channels survived
        for block in model.blocks:
            block.norm1.bias.copy_(torch.linspace(-1.0, 1.0, 32))
    result = get_technique("structured_pruning").apply(model, {"amount": 0.5}, context)
    head_dim = 32 // 4
    for before, after in zip(model.blocks, result.model.blocks, strict=True):
        old, new = before.attention, after.attention
        assert new.heads == 2 and new.query.out_features == 2 * head_dim
        kept = [int(torch.nonzero(before.norm1.bias == b)[0]) for b in after.norm1.bias]
        rows = {}
        for part in ("query", "key", "value"):
            original = getattr(old, part).weight[:, kept]
            rows[part] = [
                int(torch.nonzero((original == r).all(dim=1))[0]) for r in getattr(new, part).weight
            ]
        original_output = old.output.weight[kept].T
        rows["output"] = [
            int(torch.nonzero((original_output == c).all(dim=1))[0]) for c in new.output.weight.T
        ]
        assert rows["query"] == rows["key"] == rows["value"] == rows["output"]
        heads = sorted({r // head_dim for r in rows["query"]})
        assert rows["query"] == [h * head_dim + i for h in heads for i in range(head_dim)]  # whole heads
        assert after.mlp[0].out_features == 32  # MLP hidden neurons halved too


def test_lstm_hidden_units_that_carry_nothing_are_the_ones_removed_and_nothing_changes():
    import torch

    family, model, x, context = _setup("byte_lstm")
    lstm, hidden = model.lstm, model.lstm.hidden_size
    dead = torch.arange(0, hidden, 2)  # every other unit: all its weights zero, so it stays at 0
    gates = torch.cat([dead + g * hidden for g in range(4)])
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, name)[gates] = 0.0
        lstm.weight_hh_l0[:, dead] = 0.0
        model.classifier.weight[:, dead] = 0.0
    result = get_technique("structured_pruning").apply(model, {"amount": 0.5}, context)
    assert result.model.lstm.hidden_size == hidden // 2
    np.testing.assert_allclose(predict_torch(result.model, x), predict_torch(model, x), atol=1e-5)


@pytest.mark.parametrize("family_name", ["resnet_cnn", "vit", "byte_transformer_lm"])
def test_fine_tune_after_pruning_does_not_blow_up(family_name):
    _, _, x, _, result = _prune(family_name, finetune_steps=8, learning_rate=1e-3, batch_size=8)
    losses = result.extra["finetune_losses"]
    assert len(losses) == 8 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) <= 1.5 * losses[0]
    assert np.isfinite(predict_torch(result.model, x)).all()
    assert not result.model.training
    assert "fine-tuned 8 Adam steps" in result.notes


def test_fine_tune_is_skipped_with_a_note_when_there_are_no_labels():
    _, model, x, _ = _setup("vit")
    unlabelled = OptimizationContext("tiny", "vit", "retrieval", {}, 10, x)
    result = get_technique("structured_pruning").apply(
        model, {"amount": 0.5, "finetune_steps": 3}, unlabelled
    )
    assert "no fine-tune" in result.notes and "finetune_losses" not in result.extra


@pytest.mark.parametrize("family_name", ["resnet_cnn", "vit"])
def test_the_baseline_is_left_unchanged(family_name):
    _, model, _, context = _setup(family_name)
    model.train()  # batch norm in training mode would update its statistics if traced in place
    before = _weights(model)
    get_technique("structured_pruning").apply(model, {"amount": 0.5, "finetune_steps": 2}, context)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape and bool((before[k] == after[k]).all()) for k in before)
    assert model.training


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"amount": 0.0}, "amount"),
        ({"amount": 1.0}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": 0.5, "importance": "taylor"}, "importance"),
        ({"amount": 0.5, "round_to": 0}, "round_to"),
        ({"amount": 0.5, "finetune_steps": -1}, "finetune_steps"),
        ({"amout": 0.5}, "unknown setting"),
    ],
)
def test_bad_settings_are_config_errors(settings, message):
    _, model, _, context = _setup("resnet_cnn")
    with pytest.raises(ConfigError, match=message):
        get_technique("structured_pruning").apply(model, settings, context)


def test_a_group_that_would_be_emptied_is_left_whole_and_said_so():
    # round_to 8: the 8-channel group would keep 4, rounded down to 0, so it keeps all 8.
    _, _, _, _, result = _prune("resnet_cnn", round_to=8)
    assert result.model.stem[0].out_channels == 8
    assert result.model.blocks[-1].conv2.out_channels == 8  # 16 -> 8
    assert "left whole" in result.notes and result.extra["rebuild_recipe"]["unpruned_groups"]


def test_an_amount_that_would_empty_every_group_is_a_config_error():
    _, model, _, context = _setup("resnet_cnn")
    with pytest.raises(ConfigError, match="smaller amount"):
        get_technique("structured_pruning").apply(model, {"amount": 0.95}, context)


def test_round_to_keeps_channel_counts_a_multiple():
    _, _, _, _, result = _prune("resnet_cnn", amount=0.3, round_to=4)
    widths = [m.out_channels for m in result.model.modules() if type(m).__name__ == "Conv2d"]
    assert all(w % 4 == 0 for w in widths) and sum(widths) < 8 + 3 * 8 + 3 * 16


def test_ngram_bag_has_nothing_to_prune_and_says_why():
    _, model, _, context = _setup("ngram_bag")
    with pytest.raises(NotApplicable, match="no hidden channels"):
        get_technique("structured_pruning").apply(model, {"amount": 0.5}, context)


def test_an_embedding_model_keeps_its_embedding_width():
    """With no classifier, the residual stream is the embedding: only heads and MLP neurons go."""
    import torch
    from torch import nn

    from green_deploy.zoo.families.torch_models import TransformerBlock

    class Embedder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(50, 16)
            self.block = TransformerBlock(16, 4, 32, causal=False)

        def forward(self, ids):
            return self.block(self.embedding(ids)).mean(dim=1)

    x = RNG.integers(0, 50, size=(8, 6))
    context = OptimizationContext("tiny", "custom", "retrieval", {}, 0, x)
    model = Embedder().eval()
    result = get_technique("structured_pruning").apply(model, {"amount": 0.5}, context)
    assert predict_torch(result.model, x).shape == (8, 16)
    assert result.model.embedding.embedding_dim == 16
    assert result.model.block.attention.heads == 2 and result.model.block.mlp[0].out_features == 16
    assert result.extra["macs_after"] < result.extra["macs_before"]
    assert isinstance(result.model.block.attention.query, torch.nn.Linear)


@pytest.mark.parametrize("family_name", ["resnet_cnn", "vit", "byte_transformer_lm", "byte_lstm"])
def test_a_saved_pruned_variant_reloads_onto_a_fresh_baseline_with_identical_outputs(family_name, tmp_path):
    from green_deploy.optimize.artifacts import load_torch_variant, save_variant
    from green_deploy.optimize.spec import parse_variant

    _, _, x, context, result = _prune(family_name, finetune_steps=2)
    spec = parse_variant(
        "s", {"framework": "torch", "technique": "structured_pruning", "settings": {"amount": 0.5}}
    )
    base = {"family": family_name, "architecture": dict(context.architecture), "n_outputs": context.n_outputs}
    save_variant(result, spec, base, tmp_path, [result.extra["rebuild_recipe"]])
    reloaded = load_torch_variant(tmp_path)  # a fresh baseline with new random weights, then the plan
    np.testing.assert_array_equal(predict_torch(reloaded, x), predict_torch(result.model, x))
    assert [p.shape for p in reloaded.parameters()] == [p.shape for p in result.model.parameters()]


def test_a_plan_for_another_model_is_an_artifact_error():
    from green_deploy.optimize.techniques.structured_pruning import restore_structure

    _, _, _, _, result = _prune("resnet_cnn")
    other = get_family("vit").build_torch(CASES["vit"][0], 10)
    with pytest.raises(ArtifactError, match="ResNetCNN"):
        restore_structure(other, result.extra["rebuild_recipe"])


def test_count_macs_counts_matmuls_attention_and_lstm_steps():
    import torch
    from torch import nn

    from green_deploy.optimize.macs import count_macs

    assert count_macs(nn.Linear(4, 3), torch.zeros(2, 4)) == 2 * 4 * 3
    lstm = nn.LSTM(8, 16, batch_first=True)
    assert count_macs(lstm, torch.zeros(2, 5, 8)) == 2 * 5 * 4 * 16 * (8 + 16)

    class SDPA(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, q, q)

    # (b, h, s, d) = (2, 4, 6, 8): scores and weighted sum, s * s * d MACs each per head.
    assert count_macs(SDPA(), torch.zeros(2, 4, 6, 8)) == 2 * 4 * 2 * 6 * 6 * 8


def test_importing_the_technique_loads_no_framework():
    code = (
        "import sys; import green_deploy.optimize.techniques.structured_pruning; "
        "heavy = {'torch', 'torch_pruning', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

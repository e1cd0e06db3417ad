from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from green_deploy.estimate.counts import ModelCount, count_keras, count_torch


def torch_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


def keras_cnn():
    import tf_keras

    layers = tf_keras.layers
    inputs = tf_keras.Input((12, 12, 1))
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = layers.GlobalAveragePooling2D(name="pool2")(x)
    return tf_keras.Model(inputs, layers.Dense(10, name="fc")(x))


def work(count: ModelCount) -> list[tuple[str, int]]:
    return [(layer.kind, layer.macs) for layer in count.layers if layer.macs]


def test_torch_and_keras_twins_count_the_same_macs_per_layer():
    image = np.random.default_rng(0).random((1, 1, 12, 12), dtype=np.float32)
    torch_count = count_torch(torch_cnn(), torch.from_numpy(image))
    keras_count = count_keras(keras_cnn(), image.transpose(0, 2, 3, 1))
    expected = [("Conv2d", 144 * 8 * 9), ("Conv2d", 4 * 16 * 8 * 9), ("Conv2d", 4 * 16 * 9), ("Linear", 160)]
    assert work(torch_count) == expected
    assert work(keras_count) == expected
    assert [layer.kind for layer in keras_count.layers] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "Conv2d", "AdaptiveAvgPool2d", "Linear",
    ]  # fmt: skip
    assert keras_count.params == torch_count.params
    assert keras_count.layers[5].hyper["groups"] == torch_count.layers[6].hyper["groups"] == 16
    assert not torch_count.uncovered and not keras_count.uncovered


def test_macs_agree_with_flop_counter_mode():
    count = count_torch(torch_cnn(), torch.rand(1, 1, 12, 12))
    assert count.reference_macs == pytest.approx(count.macs, rel=0.01)


def test_only_the_first_example_is_counted():
    one = count_torch(torch_cnn(), torch.rand(1, 1, 12, 12))
    batch = count_torch(torch_cnn(), torch.rand(5, 1, 12, 12))
    assert batch.macs == one.macs and batch.layers[0].output_elems == one.layers[0].output_elems


def test_bytes_follow_the_bit_widths():
    model = torch_cnn()
    fp32 = count_torch(model, torch.rand(1, 1, 12, 12)).layers[-1]
    fp16 = count_torch(model.half(), torch.rand(1, 1, 12, 12).half()).layers[-1]
    assert (fp32.weight_bits, fp32.activation_bits, fp32.compute_bits) == (32, 32, 32)
    assert (fp16.weight_bits, fp16.activation_bits, fp16.compute_bits) == (16, 16, 16)
    assert fp32.bytes_read == (170 + 16) * 4 and fp32.bytes_written == 10 * 4
    assert fp16.bytes_read == fp32.bytes_read / 2


def test_dynamically_quantized_linear_has_8_bit_weights():
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    layers = count_torch(quantized, torch.rand(1, 32)).layers
    first = layers[0]
    assert first.kind == "Linear" and first.macs == 32 * 16
    assert (first.weight_bits, first.activation_bits, first.compute_bits) == (8, 32, 8)
    assert first.params == 32 * 16 + 16
    assert first.bytes_read == 528 * 1 + 32 * 4  # the weights at 8 bits, the fp32 inputs at 32
    assert layers[1].kind == "ReLU" and layers[1].weight_bits == 32


def test_pruned_layer_effective_macs_reflect_its_zeros():
    from torch.nn.utils import prune

    model = nn.Sequential(nn.Linear(20, 10)).eval()
    prune.l1_unstructured(model[0], "weight", amount=0.75)  # reparametrised: weight_orig * weight_mask
    mask, layer = count_torch(model, torch.rand(1, 20)).layers
    assert mask.kind == "Pointwise" and mask.extra_muls == 200  # the pruning hook's mask, every forward
    assert layer.macs == 200
    assert layer.effective_macs == pytest.approx(50)
    assert layer.params == 210 and layer.nonzero_params == 50 + int(torch.count_nonzero(model[0].bias))
    prune.remove(model[0], "weight")  # zeros baked into the weight, as saved variants have them
    assert count_torch(model, torch.rand(1, 20)).layers[0].effective_macs == pytest.approx(50)


def test_lstm_and_multihead_attention_are_counted():
    lstm = nn.LSTM(8, 16, batch_first=True)
    (counted,) = count_torch(lstm, torch.rand(1, 5, 8)).layers
    assert counted.kind == "LSTM" and counted.macs == 5 * 4 * 16 * (8 + 16)
    attention = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.rand(1, 6, 16)
    count = count_torch(attention, (x, x, x))
    (layer,) = count.layers
    assert layer.kind == "MultiheadAttention"
    assert layer.macs == 4 * 6 * 16 * 16 + 4 * 6 * 6 * 4 * 2
    assert layer.hyper["num_heads"] == 4 and layer.hyper["query_length"] == 6


def test_keras_lstm_and_attention_match_torch():
    import tf_keras

    layers = tf_keras.layers
    tokens = tf_keras.Input((5,), dtype="int32")
    x = layers.Embedding(50, 8)(tokens)
    x = layers.LSTM(16, return_sequences=True)(x)
    x = layers.MultiHeadAttention(4, 4)(x, x)
    count = count_keras(tf_keras.Model(tokens, x), np.ones((1, 5), dtype=np.int32))
    kinds = {layer.kind: layer for layer in count.layers}
    assert kinds["LSTM"].macs == 5 * 4 * 16 * (8 + 16)
    assert kinds["MultiheadAttention"].macs == 4 * 5 * 16 * 16 + 4 * 5 * 5 * 4 * 2
    assert kinds["Embedding"].macs == 0 and kinds["Embedding"].weight_reads == 5 * 8


def test_attention_inside_a_container_is_counted_from_its_matmuls():
    from green_deploy.zoo.families.torch_models import TransformerBlock

    block = TransformerBlock(dim=16, heads=4, mlp_dim=32, causal=True).eval()
    count = count_torch(block, torch.rand(1, 6, 16))
    sdpa = [layer for layer in count.layers if layer.kind == "ScaledDotProductAttention"]
    assert len(sdpa) == 1 and sdpa[0].macs == 4 * 6 * 6 * 4 * 2
    assert count.macs == count.reference_macs == 4 * 6 * 16 * 16 + 4 * 6 * 6 * 4 * 2 + 2 * 6 * 16 * 32


def test_unknown_modules_are_marked_uncovered():
    class Mystery(nn.Module):
        def forward(self, x):
            return x * 2

    count = count_torch(nn.Sequential(nn.Linear(4, 4), Mystery()), torch.rand(1, 4))
    assert [layer.kind for layer in count.uncovered] == ["Mystery"]
    assert "no counting rule" in count.uncovered[0].note


def test_transformers_conv1d_is_a_linear_layer():
    """GPT-2's projections are transformers' Conv1D: a Linear with a transposed weight."""
    import torch
    from transformers.pytorch_utils import Conv1D

    model = torch.nn.Sequential(Conv1D(nf=6, nx=4))
    (layer,) = count_torch(model, torch.zeros(1, 3, 4)).layers
    assert layer.kind == "Linear" and layer.macs == 3 * 4 * 6
    assert layer.hyper["in_features"] == 4 and layer.hyper["out_features"] == 6


class ResidualBlock(nn.Module):
    """A container that launches kernels itself: a residual addition, a product, a concatenation
    and position indices, between a Linear and an Identity."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.out = nn.Identity()

    def forward(self, x):
        y = self.fc(x) + x
        scores = y @ y.transpose(-1, -2)
        positions = torch.arange(x.shape[-2])
        return self.out(torch.cat((scores, y), dim=-1)), positions


def test_glue_kernels_between_layers_are_counted_once():
    count = count_torch(ResidualBlock().eval(), torch.rand(1, 5, 8))
    glue = {layer.kind: layer for layer in count.layers if "op" in layer.hyper}
    assert set(glue) == {
        "Pointwise",
        "Copy",
        "Factory",
    }  # views, the product's kernels and weight statistics are not glue
    assert glue["Pointwise"].input_elems == 2 * 5 * 8 and glue["Pointwise"].output_elems == 5 * 8
    assert glue["Pointwise"].extra_adds == 5 * 8
    assert glue["Copy"].input_elems == glue["Copy"].output_elems == 5 * 5 + 5 * 8
    assert glue["Factory"].output_elems == 5 and glue["Factory"].input_elems == 0
    assert [layer.kind for layer in count.layers if layer.macs] == ["Linear", "MatMul"]
    assert count.macs == count.reference_macs and not count.uncovered


def test_an_activation_written_as_several_ops_counts_its_kernels():
    from transformers.activations import NewGELUActivation

    count = count_torch(nn.Sequential(nn.GELU(), NewGELUActivation()), torch.rand(1, 4))
    assert [(layer.kind, layer.hyper["kernels"]) for layer in count.layers] == [("GELU", 1), ("GELU", 8)]


def test_ops_between_layers_without_a_rule_are_uncovered():
    class Sorting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(torch.sort(x).values)

    (uncovered,) = count_torch(Sorting(), torch.rand(1, 4)).uncovered
    assert uncovered.kind == "Op" and "aten::sort" in uncovered.note


@pytest.mark.parametrize(
    ("op", "kind", "input_elems"),
    [
        (lambda x: nn.functional.interpolate(x, scale_factor=2, mode="nearest-exact"), "Copy", 16),
        (lambda x: x.new_ones(x.shape), "Factory", 0),
        (lambda x: x.sum(dim=-1), "Reduction", 16),
    ],
)
def test_glue_ops_are_classified_by_what_they_do(op, kind, input_elems):
    class Container(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(op(x))

    (glue,) = [
        layer for layer in count_torch(Container(), torch.rand(1, 1, 4, 4)).layers if "op" in layer.hyper
    ]
    assert (glue.kind, glue.input_elems, glue.covered) == (kind, input_elems, True)


def test_a_saved_model_is_counted_as_its_runtime_loads_it(tmp_path):
    """count_artifact loads through the runtime registry and counts by framework; an image
    example in the PyTorch layout is moved to NHWC for Keras."""
    from green_deploy.estimate.counts import count_artifact
    from green_deploy.runtimes import get_runtime

    model = keras_cnn()
    get_runtime("keras").save(model, tmp_path, {})
    image = np.random.default_rng(0).random((1, 1, 12, 12), dtype=np.float32)
    counted = count_artifact(tmp_path, "keras", image)
    assert work(counted) == work(count_keras(model, image.transpose(0, 2, 3, 1)))
    assert counted.framework == "keras"


@pytest.mark.parametrize(("runtime", "source"), [("tflite", "keras"), ("onnxruntime", "pytorch")])
def test_a_converted_graph_is_not_parsed_and_names_its_source(tmp_path, runtime, source):
    from green_deploy.estimate.counts import UncoveredModelError, count_artifact

    with pytest.raises(UncoveredModelError, match=f"count the {source} model"):
        count_artifact(tmp_path, runtime, np.zeros((1, 4), np.float32))

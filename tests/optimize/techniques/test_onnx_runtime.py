"""The ONNX Runtime technique on tiny zoo models: fp32 equal to PyTorch, int8 close and smaller.

Tolerances, measured on these tiny models (seeded, random weights, outputs of magnitude 0.2-0.8;
torch 2.13, onnxruntime 1.32, 2-core x86 CPU) as max |ORT - PyTorch| over the batch:

- fp32: at most 2.4e-7 (ViT); asserted ``atol=1e-5``.
- int8, as max |ORT - PyTorch| / max |PyTorch|: dynamic at most 0.016 (n-gram bag), static at
  most 0.013 (ViT); asserted 0.06, room for int8 kernels that differ between CPUs (VNNI or not).
- files, int8 / fp32 export: dynamic 0.25 (n-gram bag) to 0.59 (ResNet), static 0.25 to 0.87
  (byte LSTM, whose recurrent weights stay float32: ORT's QDQ op set has no LSTM); 8-bit weights
  are 89-100% of the parameters, 17% for static int8 on the byte LSTM.
"""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.optimize import artifacts
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.spec import parse_variant
from green_deploy.optimize.techniques import get_technique
from green_deploy.runtimes import get_runtime
from green_deploy.runtimes.onnxruntime import ONNX_FILE, onnx_tensor_stats, predict_onnx
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_torch

RNG = np.random.default_rng(0)
TEXTS = ["hello world", "bonjour à tous", "hola que tal", "привет мир", "import numpy", "guten Tag"] * 2
IMAGES = (RNG.random((12, 28, 28)) * 255).astype(np.uint8)
CASES = {
    "resnet_cnn": ({"widths": [8, 16], "blocks_per_stage": 1}, IMAGES, 10),
    "vit": ({"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}, IMAGES, 10),
    "ngram_bag": ({"ngram_sizes": [1, 2], "max_bytes": 32, "n_buckets": 4096, "dim": 32}, TEXTS, 4),
    "byte_lstm": ({"max_length": 32, "embedding_dim": 16, "hidden_dim": 64}, TEXTS, 4),
}
QUANTIZED = ("dynamic_int8", "static_int8")
FP32_ATOL = 1e-5
INT8_RELATIVE = 0.06

_models: dict[str, tuple] = {}
_results: dict[tuple[str, str], object] = {}


def _setup(family_name):
    """(model, x, context) of a tiny seeded model, built once per family."""
    if family_name not in _models:
        import torch

        arch, examples, n_outputs = CASES[family_name]
        family = get_family(family_name)
        x = family.encode(examples, arch)
        torch.manual_seed(0)
        model = family.build_torch(arch, n_outputs).eval()
        context = OptimizationContext("tiny", family_name, "classification", arch, n_outputs, x)
        _models[family_name] = (model, x, context)
    return _models[family_name]


def _onnx(family_name, quantization):
    """The technique's result, computed once per family and mode (exports take seconds)."""
    if (family_name, quantization) not in _results:
        model, _, context = _setup(family_name)
        _results[family_name, quantization] = get_technique("onnx").apply(
            model, {"quantization": quantization}, context
        )
    return _results[family_name, quantization]


@pytest.mark.parametrize("family_name", sorted(CASES))
def test_fp32_export_gives_the_pytorch_outputs(family_name):
    model, x, _ = _setup(family_name)
    result = _onnx(family_name, "none")
    assert (result.framework, result.runtime, result.devices) == ("torch", "onnxruntime", ("cpu",))
    assert isinstance(result.model, bytes)
    assert "torch.onnx.export(dynamo=True" in result.notes
    np.testing.assert_allclose(predict_onnx(result.model, x), predict_torch(model, x), atol=FP32_ATOL)


@pytest.mark.parametrize("quantization", QUANTIZED)
@pytest.mark.parametrize("family_name", sorted(CASES))
def test_int8_stays_close_and_is_smaller(family_name, quantization):
    model, x, _ = _setup(family_name)
    fp32, result = _onnx(family_name, "none"), _onnx(family_name, quantization)
    baseline = predict_torch(model, x)
    error = np.abs(predict_onnx(result.model, x) - baseline).max() / np.abs(baseline).max()
    assert error <= INT8_RELATIVE
    assert len(result.model) < len(fp32.model)
    assert onnx_tensor_stats(result.model)["weight_bytes"] < onnx_tensor_stats(fp32.model)["weight_bytes"]
    assert f"quantize_{quantization.split('_')[0]}" in result.notes
    fraction = result.extra["int8_parameter_fraction"]
    if (family_name, quantization) == ("byte_lstm", "static_int8"):
        assert fraction < 0.5  # the LSTM's weights stay float32: no QDQ LSTM in ORT
    else:
        assert fraction >= 0.85


@pytest.mark.parametrize("family_name", ["ngram_bag", "byte_lstm"])
def test_stats_count_the_module_parameters_in_every_mode(family_name):
    # Families without LayerNorm/BatchNorm: random-init norms are identical tensors that the
    # exporter stores once, and BatchNorm is folded into convolutions, so counts differ there.
    model, _, _ = _setup(family_name)
    n_torch = sum(p.numel() for p in model.parameters())
    fp32 = onnx_tensor_stats(_onnx(family_name, "none").model)
    assert 0 <= fp32["n_parameters"] - n_torch <= 4  # a few folded scalar constants
    assert fp32["parameters_by_dtype"] == {"float32": fp32["n_parameters"]}
    for quantization in QUANTIZED:
        stats = onnx_tensor_stats(_onnx(family_name, quantization).model)
        assert stats["n_parameters"] == fp32["n_parameters"]
        assert stats["parameters_by_dtype"].get("int8", 0) + stats["parameters_by_dtype"].get("uint8", 0) > 0


def test_pruned_weights_stay_zero_through_export_and_static_int8():
    model, x, context = _setup("vit")
    pruned = get_technique("magnitude_pruning").apply(model, {"amount": 0.5, "scope": "global"}, context)
    zeros_torch = sum(int((p == 0).sum()) for p in pruned.model.parameters() if p.dim() >= 2)
    onnx = get_technique("onnx")
    fp32 = onnx.apply(pruned.model, {}, context)
    static = onnx.apply(pruned.model, {"quantization": "static_int8"}, context)
    np.testing.assert_allclose(predict_onnx(fp32.model, x), predict_torch(pruned.model, x), atol=FP32_ATOL)
    assert onnx_tensor_stats(fp32.model)["n_matrix_zeros"] >= zeros_torch
    # symmetric int8 weights: a zero weight is stored as the zero point, so it is still counted
    assert onnx_tensor_stats(static.model)["n_matrix_zeros"] >= zeros_torch


def test_half_precision_exports_but_is_not_quantized():
    model, x, context = _setup("vit")
    half = get_technique("half_precision").apply(model, {"dtype": "float16"}, context)
    fp16 = get_technique("onnx").apply(half.model, {}, context)
    np.testing.assert_allclose(predict_onnx(fp16.model, x), predict_torch(model, x), atol=5e-3)
    assert "float16" in onnx_tensor_stats(fp16.model)["parameters_by_dtype"]
    with pytest.raises(NotApplicable, match="float32 weights"):
        get_technique("onnx").apply(half.model, {"quantization": "static_int8"}, context)


def test_torch_int8_modules_do_not_export():
    model, _, context = _setup("byte_lstm")
    quantized = get_technique("dynamic_int8").apply(model, {}, context)
    with pytest.raises(NotApplicable, match=r"torch\.onnx\.export \(dynamo\) failed: \w+"):
        get_technique("onnx").apply(quantized.model, {}, context)


@pytest.mark.parametrize("quantization", QUANTIZED)
def test_a_given_onnx_graph_is_quantized_as_it_is(quantization):
    """An ONNX own model (framework onnx): no export, ORT's quantizer on the graph's own input."""
    import onnx

    model, x, context = _setup("resnet_cnn")
    graph = onnx.load_model_from_string(_onnx("resnet_cnn", "none").model)
    for node in graph.graph.node:
        node.input[:] = ["images" if name == "x" else name for name in node.input]
    graph.graph.input[0].name = "images"
    result = get_technique("onnx").apply(graph.SerializeToString(), {"quantization": quantization}, context)
    assert (result.framework, result.runtime) == ("onnx", "onnxruntime")
    assert "the given ONNX graph" in result.notes and "export_s" not in result.extra
    reference = predict_torch(model, x)
    assert np.max(np.abs(predict_onnx(result.model, x) - reference)) <= INT8_RELATIVE * np.max(
        np.abs(reference)
    )


def test_neither_a_module_nor_a_graph_is_not_applicable():
    _, _, context = _setup("vit")
    with pytest.raises(NotApplicable, match="nn.Module"):
        get_technique("onnx").apply("a Keras model, say", {}, context)


def test_a_quantizer_failure_is_not_applicable_with_its_first_line(monkeypatch):
    import onnxruntime.quantization

    def fail(*args, **kwargs):
        raise RuntimeError("\nno int8 kernel for op Foo\ndetails nobody needs")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", fail)
    model, _, context = _setup("ngram_bag")
    with pytest.raises(NotApplicable, match=r"\(dynamic_int8\) failed: no int8 kernel for op Foo$"):
        get_technique("onnx").apply(model, {"quantization": "dynamic_int8"}, context)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"quantization": "int4"}, "quantization must be one of"),
        ({"opset": 7}, "opset must be between"),
        ({"calibration_samples": 0}, "calibration_samples"),
        ({"op_types": ["MatMul"]}, "op_types needs quantization"),
        (
            {"quantization": "dynamic_int8", "op_types": ["Softmax"]},
            r"cannot quantize op types \['Softmax'\]",
        ),
        ({"quantisation": "none"}, "unknown setting"),
        ({"per_channel": "yes"}, "true or false"),
    ],
)
def test_bad_settings_are_config_errors(settings, message):
    model, _, context = _setup("vit")
    with pytest.raises(ConfigError, match=message):
        get_technique("onnx").apply(model, settings, context)


def test_save_load_and_measure_round_trip(tmp_path):
    from green_deploy.optimize.runner import _predictor

    _, x, _ = _setup("vit")
    result = _onnx("vit", "static_int8")
    spec = parse_variant(
        "pt_onnx_static_int8",
        {"framework": "torch", "technique": "onnx", "settings": {"quantization": "static_int8"}},
    )
    files = artifacts.save_variant(result, spec, {"family": "vit"}, tmp_path)
    assert files == [ONNX_FILE]
    loaded = get_runtime("onnxruntime").load(tmp_path)
    assert loaded == result.model
    np.testing.assert_array_equal(_predictor("onnxruntime", loaded)(x), predict_onnx(result.model, x))
    measured = artifacts.measure_artifact(tmp_path, files, "onnxruntime")
    stats = onnx_tensor_stats(result.model)
    assert measured.size_on_disk_bytes == len(result.model)
    assert measured.n_parameters == stats["n_parameters"]
    assert measured.n_nonzero_parameters == stats["n_parameters"] - stats["n_zeros"]
    assert measured.effective_sparsity == pytest.approx(
        stats["n_matrix_zeros"] / stats["n_matrix_parameters"]
    )
    (tmp_path / ONNX_FILE).unlink()
    with pytest.raises(Exception, match="missing"):
        get_runtime("onnxruntime").load(tmp_path)

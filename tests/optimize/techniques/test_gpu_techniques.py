"""The Hopper-native techniques (fp8, int8/int4 weight-only, CUDA graphs, 2:4 placement) on the
CPU: their numbers against the model they came from, their files, where they may run, and the
device checks a GPU gets when they are placed there (capabilities faked: no GPU here)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from green_deploy.errors import ConfigError
from green_deploy.evaluate.study import runs_on
from green_deploy.optimize.base import NotApplicable, OptimizationContext
from green_deploy.optimize.quantized_linear import (
    Float8Linear,
    Int4WeightOnlyLinear,
    Int8DynamicLinear,
    Int8WeightOnlyLinear,
    eligible_linears,
)
from green_deploy.optimize.structure import replay_structure
from green_deploy.optimize.techniques import get_technique
from green_deploy.optimize.torch_modules import CudaGraphed, SemiStructuredLinear
from green_deploy.runtimes.pytorch import place, variant_tensors


class Mlp(nn.Module):
    def __init__(self, widths=(256, 512, 256), n_outputs=10):
        super().__init__()
        layers = [nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)]
        self.hidden = nn.ModuleList(layers)
        self.head = nn.Linear(widths[-1], n_outputs)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.head(x)


def _setup(widths=(256, 512, 256)):
    torch.manual_seed(0)
    model = Mlp(widths).eval()
    x = np.random.default_rng(0).standard_normal((64, widths[0])).astype(np.float32)
    return model, x, OptimizationContext("mlp", "test", "classification", {}, 10, x)


def _run(model, x):
    with torch.inference_mode():
        return place(model, "cpu")(torch.as_tensor(x)).float()


def _relative_error(model, variant, x):
    reference = _run(model, x)
    return float((_run(variant, x) - reference).norm() / reference.norm())


def _rebuilt(result, technique, settings, widths=(256, 512, 256)):
    """The variant as a served one is: its tensors into a structure rebuilt from its step."""
    step = {"technique": technique, "settings": settings, "recipe": result.extra.get("rebuild_recipe")}
    fresh = replay_structure(Mlp(widths).eval(), step)
    fresh.load_state_dict(variant_tensors(result.model), strict=True)
    return fresh


@pytest.mark.parametrize(
    ("technique", "settings", "layer_type", "tolerance", "devices"),
    [
        ("fp8", {}, Float8Linear, 0.08, {"cuda"}),  # the CPU's _scaled_mm: an emulation, fine for tiny layers
        ("weight_only", {"bits": 8}, Int8WeightOnlyLinear, 0.02, {"cpu", "cuda"}),
        ("weight_only", {"bits": 8, "kernel": "dequantize"}, Int8WeightOnlyLinear, 0.02, {"cpu", "cuda"}),
        ("weight_only", {"bits": 4, "group_size": 128}, Int4WeightOnlyLinear, 0.12, {"cpu", "cuda"}),
        ("int8_dynamic", {}, Int8DynamicLinear, 0.03, {"cpu", "cuda"}),
    ],
)
def test_low_precision_layers_stay_close_keep_the_classifier_and_reload_identically(
    technique, settings, layer_type, tolerance, devices
):
    model, x, context = _setup()
    result = get_technique(technique).apply(model, settings, context)
    quantized = [m for m in result.model.modules() if isinstance(m, layer_type)]
    assert len(quantized) == 2  # both hidden layers; the classifier stays in bfloat16
    assert type(result.model.module.head) is nn.Linear
    assert _relative_error(model, result.model, x) < tolerance
    assert torch.equal(_run(_rebuilt(result, technique, settings), x), _run(result.model, x))
    assert set(result.devices) == devices


def test_stored_low_precision_weights_take_their_real_size():
    model, _, context = _setup()
    fp32_bytes = model.hidden[0].weight.numel() * 4
    for technique, settings, key, ratio in [
        ("fp8", {}, "module.hidden.0.weight_fp8", 4),
        ("weight_only", {"bits": 8}, "module.hidden.0.weight_int8", 4),
        ("weight_only", {"bits": 4}, "module.hidden.0.weight_int4x2", 8),
    ]:
        tensors = variant_tensors(get_technique(technique).apply(model, settings, context).model)
        stored = tensors[key]
        assert stored.numel() * stored.element_size() == fp32_bytes // ratio


def test_int4_codes_decode_as_the_kernel_reads_them():
    torch.manual_seed(1)
    linear = nn.Linear(256, 64)
    layer = Int4WeightOnlyLinear.from_linear(linear, group_size=64)
    codes = layer.codes().float().reshape(64, 4, 64)
    scale, zero = layer.scales_and_zeros.float().permute(1, 0, 2).unbind(-1)
    dequantized = ((codes - 8) * scale[..., None] + zero[..., None]).reshape(64, 256)
    x = torch.randn(5, 256, dtype=torch.bfloat16)
    expected = x.float() @ dequantized.T + linear.bias.detach()
    torch.testing.assert_close(layer(x).float(), expected, atol=0.05, rtol=0.02)
    assert float((dequantized - linear.weight.detach()).abs().max()) < 0.5 * float(scale.max()) + 1e-2


@pytest.mark.parametrize(
    "make",
    [
        lambda linear: Int4WeightOnlyLinear.from_linear(linear, 64),
        lambda linear: Int8WeightOnlyLinear.from_linear(linear, torch.bfloat16, "packed"),
        lambda linear: Int8DynamicLinear.from_linear(linear, torch.bfloat16),
    ],
    ids=["int4_weight_only", "int8_weight_only", "int8_dynamic"],
)
def test_a_strided_input_reads_as_its_contiguous_copy(make):
    """A pooler reads ``hidden_states[:, 0]``, a view the fused kernels refuse as it is (BERT's
    pooler stopped the GPU study's int4 build)."""
    torch.manual_seed(2)
    layer = make(nn.Linear(128, 32))
    states = torch.randn(4, 6, 128, dtype=torch.bfloat16)
    first_token = states[:, 0]
    assert not first_token.is_contiguous()
    with torch.inference_mode():
        torch.testing.assert_close(layer(first_token), layer(first_token.contiguous()))


def test_int8_weight_only_auto_reads_packed_weights_only_where_that_kernel_is_fast():
    """``_weight_int8pack_mm`` on CUDA is made for a few rows (54-120x bf16 from 32 x 128 rows on
    an H100): ``auto`` widens the weights there, and keeps the packed kernel on the CPU."""
    linear = nn.Linear(64, 32)
    auto = Int8WeightOnlyLinear.from_linear(linear, torch.bfloat16, "auto")
    assert auto.reads_packed(on_cuda=False, rows=4096)
    assert auto.reads_packed(on_cuda=True, rows=16)
    assert not auto.reads_packed(on_cuda=True, rows=17)
    packed = Int8WeightOnlyLinear.from_linear(linear, torch.bfloat16, "packed")
    assert packed.reads_packed(on_cuda=True, rows=4096)
    widened = Int8WeightOnlyLinear.from_linear(linear, torch.bfloat16, "dequantize")
    assert not widened.reads_packed(on_cuda=False, rows=1)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(auto(x), packed(x))
        torch.testing.assert_close(widened(x).float(), packed(x).float(), atol=0.05, rtol=0.02)


def test_int4_weight_only_auto_widens_its_weights_beyond_one_sequence_on_cuda():
    """tinygemm measured 0.8-1.8x bf16 for 128 token rows on an H100 and 3.8-8.3x from 4096:
    ``auto`` widens the int4 weights for more than 128 rows on CUDA, to the same numbers."""
    torch.manual_seed(4)
    linear = nn.Linear(256, 64)
    auto = Int4WeightOnlyLinear.from_linear(linear, 64, "auto")
    assert auto.reads_packed(on_cuda=False, rows=4096)
    assert auto.reads_packed(on_cuda=True, rows=128)
    assert not auto.reads_packed(on_cuda=True, rows=129)
    packed = Int4WeightOnlyLinear.from_linear(linear, 64)
    widened = Int4WeightOnlyLinear.from_linear(linear, 64, "dequantize")
    assert packed.kernel == "packed" and not widened.reads_packed(on_cuda=False, rows=1)
    x = torch.randn(300, 256, dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(auto(x), packed(x))
        torch.testing.assert_close(widened(x).float(), packed(x).float(), atol=0.05, rtol=0.02)


def test_a_weight_only_variant_recorded_with_the_former_kernel_name_reads_packed_weights():
    technique = get_technique("weight_only")
    assert technique.settings({"bits": 8, "kernel": "int8pack"}).kernel == "packed"
    assert Int8WeightOnlyLinear.from_linear(nn.Linear(16, 8), torch.bfloat16, "int8pack").kernel == "packed"
    with pytest.raises(ConfigError, match="kernel must be one of packed, dequantize, auto"):
        technique.settings({"bits": 4, "kernel": "tinygemm"})


def _fp8_then(technique, fp8, result):
    """fp8 then ``technique`` as a served variant is: both recorded steps replayed on a fresh
    structure, ``result``'s tensors loaded into it."""
    fresh = Mlp().eval()
    for step in (
        {"technique": "fp8", "settings": {}, "recipe": fp8.extra["rebuild_recipe"]},
        {"technique": technique, "settings": {}},
    ):
        fresh = replay_structure(fresh, step)
    fresh.load_state_dict(variant_tensors(result.model), strict=True)
    return fresh


def test_fp8_replayed_as_cuda_graphs_is_cuda_only_and_reloads_from_its_two_steps():
    model, x, context = _setup()
    fp8 = get_technique("fp8").apply(model, {}, context)
    graphed = get_technique("cuda_graph").apply(fp8.model, {}, context)
    assert graphed.devices == ("cuda",) and isinstance(graphed.model, CudaGraphed)
    fresh = _fp8_then("cuda_graph", fp8, graphed)
    assert isinstance(fresh, CudaGraphed)
    assert any(isinstance(m, Float8Linear) for m in fresh.modules())
    torch.testing.assert_close(_run(fresh, x[:4]), _run(fp8.model, x[:4]))


def test_fp8_compiled_whole_stays_cuda_only_compiles_where_it_is_served_and_reloads_from_its_two_steps():
    model, x, context = _setup()
    fp8 = get_technique("fp8").apply(model, {}, context)
    compiled = get_technique("torch_compile").apply(fp8.model, {}, replace(context, devices=fp8.devices))
    assert compiled.devices == ("cuda",) and "compile_s" not in compiled.extra  # no GPU here: nothing run
    assert "compiles on its first call there" in compiled.notes
    fresh = _fp8_then("torch_compile", fp8, compiled)
    # traced whole on its first call (here the CPU's emulation, tiny layers): the cast, fused into
    # the generated kernels, divides in float32 rather than bfloat16, as close to the model as eager
    assert _relative_error(model, fresh, x) <= 1.1 * _relative_error(model, fp8.model, x) < 0.08


@pytest.mark.parametrize("bias", [True, False])
def test_int8_dynamic_scales_its_int32_sums_back_with_or_without_a_bias(bias):
    torch.manual_seed(3)
    linear = nn.Linear(64, 48, bias=bias)
    layer = Int8DynamicLinear.from_linear(linear, torch.bfloat16)
    x = torch.randn(40, 64)
    with torch.inference_mode():
        out = layer(x.to(torch.bfloat16))
        expected = linear(x)
    assert out.dtype == torch.bfloat16 and out.shape == (40, 48)
    assert float((out.float() - expected).norm() / expected.norm()) < 0.03


def test_fp8_input_scales_come_from_the_calibration_inputs():
    model, x, context = _setup()
    first = get_technique("fp8").apply(model, {}, context).model.module.hidden[0]
    wider = get_technique("fp8").apply(model, {"margin": 2.0}, context).model.module.hidden[0]
    assert float(first.input_scale) == pytest.approx(float(np.abs(x).max()) / 448, rel=0.01)
    assert float(wider.input_scale) == pytest.approx(2 * float(first.input_scale), rel=1e-6)


@pytest.mark.parametrize(
    ("technique", "settings", "widths", "message"),
    [
        ("fp8", {}, (24, 40, 24), "divisible by 16"),
        ("weight_only", {"bits": 4}, (96, 64, 96), "divisible by 128"),
        ("weight_only", {"bits": 8}, (12, 20, 12), "divisible by 8"),
        ("int8_dynamic", {}, (12, 20, 12), "divisible by 8"),
    ],
)
def test_layers_the_kernels_cannot_tile_make_the_technique_not_applicable(
    technique, settings, widths, message
):
    model, x, context = _setup(widths)
    with pytest.raises(NotApplicable, match=message):
        get_technique(technique).apply(model, settings, context)


@pytest.mark.parametrize(
    ("technique", "settings", "message"),
    [
        ("weight_only", {"bits": 3}, "bits must be 4 or 8"),
        ("weight_only", {"bits": 4, "group_size": 100}, "group_size"),
        ("weight_only", {"kernel": "fast"}, "kernel must be one of"),
        ("fp8", {"margin": 0.5}, "margin"),
        ("cuda_graph", {"max_shapes": 0}, "max_shapes"),
        ("fp8", {"scale": "dynamic"}, "scale"),
    ],
)
def test_bad_settings_are_config_errors(technique, settings, message):
    model, _, context = _setup()
    with pytest.raises(ConfigError, match=message):
        get_technique(technique).apply(model, settings, context)


def _fake_gpu(monkeypatch, capability, name="NVIDIA Old GPU"):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)


@pytest.mark.parametrize(
    ("layer", "capability", "needed"),
    [
        (Float8Linear.from_linear(nn.Linear(32, 32), 1.0, torch.bfloat16), (8, 0), "8.9"),
        (Int4WeightOnlyLinear.from_linear(nn.Linear(128, 32), 128), (7, 5), "8.0"),
        (Int8DynamicLinear.from_linear(nn.Linear(32, 32), torch.bfloat16), (7, 0), "7.5"),
    ],
)
def test_a_gpu_too_old_for_the_kernels_is_refused_with_what_it_needs(monkeypatch, layer, capability, needed):
    _fake_gpu(monkeypatch, capability)
    with pytest.raises(ConfigError, match=rf"compute capability {needed} or later; NVIDIA Old GPU is"):
        layer.on_device("cuda")
    layer.on_device("cpu")  # the CPU kernels need no capability


def test_two_of_four_layers_are_recorded_and_replayed_and_stay_dense_where_kernels_refuse(
    monkeypatch, caplog
):
    model, x, context = _setup()
    settings: dict = {}
    result = get_technique("semi_structured_sparsity").apply(model, settings, context)
    rebuilt = _rebuilt(result, "semi_structured_sparsity", settings)
    marked = [name for name, m in rebuilt.named_modules() if isinstance(m, SemiStructuredLinear)]
    assert marked == ["hidden.0", "hidden.1"]  # the classifier keeps its dense weights
    assert torch.equal(_run(rebuilt, x), _run(result.model, x))
    _fake_gpu(monkeypatch, (9, 0), "NVIDIA H100")
    rebuilt.hidden[0].on_device("cuda")  # float32 weights: the sparse kernels take fp16/bf16 only
    assert not rebuilt.hidden[0].sparse_kernel
    assert "stays dense" in caplog.text


@pytest.mark.parametrize(
    ("settings", "capability", "recorded", "backend"),
    [
        ({}, (8, 0), "auto", "SparseSemiStructuredTensorCUTLASS"),
        ({}, (9, 0), "auto", "SparseSemiStructuredTensorCUSPARSELT"),
        ({"kernel": "cutlass"}, (8, 6), "cutlass", "SparseSemiStructuredTensorCUTLASS"),
        ({"kernel": "cusparselt"}, (8, 0), "cusparselt", "SparseSemiStructuredTensorCUSPARSELT"),
    ],
)
def test_the_sparse_kernel_is_recorded_replayed_and_chosen_on_the_gpu(
    monkeypatch, settings, capability, recorded, backend
):
    """cuSPARSELt set up its plan at every call (~60 ms per BERT forward on an H100), CUTLASS's
    kernels exist for 8.x GPUs only: a variant records its choice and auto takes what the GPU has."""
    chosen = _sparse_backends_chosen(monkeypatch)
    model, x, context = _setup()
    result = get_technique("semi_structured_sparsity").apply(model, settings, context)
    assert result.extra["rebuild_recipe"]["kernel"] == recorded
    rebuilt = _rebuilt(result, "semi_structured_sparsity", settings)
    assert {m.sparse_backend for m in rebuilt.modules() if isinstance(m, SemiStructuredLinear)} == {recorded}
    _fake_gpu(monkeypatch, capability, "NVIDIA GPU")
    layer = rebuilt.hidden[0].to(torch.bfloat16)
    layer.on_device("cuda")
    assert chosen == [backend] and layer.sparse_kernel


def test_cutlass_asked_for_on_a_gpu_without_its_kernels_stays_dense_and_says_why(monkeypatch, caplog):
    """An H100 refused CUTLASS's 2:4 matmul at the first call ("compute capability 8.x")."""
    chosen = _sparse_backends_chosen(monkeypatch)
    model, x, context = _setup()
    result = get_technique("semi_structured_sparsity").apply(model, {"kernel": "cutlass"}, context)
    _fake_gpu(monkeypatch, (9, 0), "NVIDIA H100")
    layer = result.model.hidden[0].to(torch.bfloat16)
    layer.on_device("cuda")
    assert chosen == [] and not layer.sparse_kernel
    assert (
        "stays dense on NVIDIA H100: PyTorch builds CUTLASS's sparse kernels for compute capability 8.x"
        in caplog.text
    )


def _sparse_backends_chosen(monkeypatch) -> list[str]:
    """The sparse tensor classes ``from_dense`` is called on, in order (the weight kept dense)."""
    import torch.sparse

    chosen: list[str] = []
    for name in ("SparseSemiStructuredTensorCUTLASS", "SparseSemiStructuredTensorCUSPARSELT"):
        monkeypatch.setattr(
            getattr(torch.sparse, name),
            "from_dense",
            classmethod(lambda cls, w: chosen.append(cls.__name__) or w),
        )
    return chosen


def test_a_recipe_from_before_the_kernel_setting_keeps_cusparselt_and_a_bad_kernel_is_named():
    model, x, context = _setup()
    result = get_technique("semi_structured_sparsity").apply(model, {}, context)
    old_recipe = {"layers": result.extra["rebuild_recipe"]["layers"]}
    step = {"technique": "semi_structured_sparsity", "settings": {}, "recipe": old_recipe}
    rebuilt = replay_structure(Mlp().eval(), step)
    assert {m.sparse_backend for m in rebuilt.modules() if isinstance(m, SemiStructuredLinear)} == {
        "cusparselt"
    }
    with pytest.raises(ConfigError, match="kernel must be one of auto, cutlass, cusparselt"):
        get_technique("semi_structured_sparsity").apply(model, {"kernel": "cusparse"}, context)


def test_cuda_graphs_are_declared_for_cuda_only_and_pass_through_on_the_cpu():
    model, x, context = _setup()
    result = get_technique("cuda_graph").apply(model, {}, context)
    assert result.devices == ("cuda",)
    assert isinstance(result.model, CudaGraphed)
    assert torch.equal(_run(result.model, x), _run(model, x))
    row = {"runtime": "pytorch", "technique": "half_precision+cuda_graph", "devices": "cuda"}
    assert not runs_on(row, "cpu")
    assert runs_on(row, "cuda")
    assert runs_on({"runtime": "pytorch", "technique": "fp8", "devices": "cpu,cuda"}, "cpu")


def test_placing_a_model_tells_every_layer_where_it_runs():
    seen = []

    class Probe(nn.Module):
        def on_device(self, device):
            seen.append(device)

    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(Probe(), Probe()))
    assert place(model, "cpu") is model
    assert seen == ["cpu", "cpu"]


def test_eligible_layers_follow_the_kernels_tiles_and_skip_the_classifier():
    model = Mlp((256, 200, 128, 64))
    assert eligible_linears(model, keep_output_layer=True, in_multiple=16, out_multiple=16) == ["hidden.2"]
    assert eligible_linears(model, keep_output_layer=False, in_multiple=8, out_multiple=1) == [
        "hidden.0",
        "hidden.1",
        "hidden.2",
        "head",
    ]

"""Linear layers with low-precision weights that run on PyTorch's own fused kernels.

``Float8Linear`` (e4m3 weights and activations, ``torch._scaled_mm``: fp8 tensor cores on
compute capability 8.9+, an emulation on the CPU), ``Int8WeightOnlyLinear``
(``torch._weight_int8pack_mm``: int8 weights dequantized inside the matmul) and
``Int8DynamicLinear`` (int8 weights and per-row dynamic int8 activations, ``torch._int_mm``:
int8 tensor cores) and ``Int4WeightOnlyLinear`` (asymmetric groups of 4-bit weights,
``torch._weight_int4pack_mm``: the "tinygemm" kernel on CUDA 8.0+, its CPU twin here). The
weight-only layers can instead widen their weights for the tensor cores where many rows make the
packed kernels slow (``WeightOnlyKernel``). These are the aten kernels torchao's
float8 and weight-only layouts call; using them directly keeps variants loadable with PyTorch
alone (torchao is neither on the GPU image nor pinned for this CPU build).

Every layer stores device-neutral tensors (safetensors holds float8 and uint8), so a variant
file is the real low-precision size; kernels that want a device-specific layout (int4's packed
tiles) are prepared by ``on_device``, which the PyTorch runtime calls on every module after
moving a model (``runtimes.pytorch.place``). A GPU too old for a kernel is refused there with
the reason (``require_cuda_capability``), not left to fail inside CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from green_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448


def require_cuda_capability(minimum: tuple[int, int], what: str) -> None:
    """Refuse a CUDA GPU older than ``minimum`` (compute capability) for ``what``."""
    capability = tuple(torch.cuda.get_device_capability())
    if capability < minimum:
        raise ConfigError(
            f"{what} needs an NVIDIA GPU of compute capability {minimum[0]}.{minimum[1]} or later; "
            f"{torch.cuda.get_device_name()} is {capability[0]}.{capability[1]}: serve this variant on "
            "a newer GPU, or leave it out of the study"
        )


def eligible_linears(
    model: nn.Module, keep_output_layer: bool, in_multiple: int, out_multiple: int
) -> list[str]:
    """Names of the Linear layers whose input and output widths are multiples of what the
    kernels tile by; the last Linear (the classifier) is left out when ``keep_output_layer``."""
    linears = [name for name, module in model.named_modules() if type(module) is nn.Linear]
    if keep_output_layer and linears:
        linears = linears[:-1]
    modules = dict(model.named_modules())
    return [
        name
        for name in linears
        if modules[name].in_features % in_multiple == 0 and modules[name].out_features % out_multiple == 0
    ]


def swap_modules(model: nn.Module, replacements: Iterable[tuple[str, nn.Module]]) -> nn.Module:
    """``model`` with each named submodule replaced, in place."""
    for name, module in replacements:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
    return model


def bfloat16_with(
    model: nn.Module, layers: list[str], convert: Callable[[nn.Linear], nn.Module]
) -> nn.Module:
    """``model`` in bfloat16 with the named Linear layers converted, taking float32 inputs as
    its baseline does (``CastInputs``): the structure every technique of this module builds."""
    from green_deploy.optimize.torch_modules import CastInputs

    model = model.to(torch.bfloat16)
    modules = dict(model.named_modules())
    swap_modules(model, [(name, convert(modules[name])) for name in layers])
    return CastInputs(model, torch.bfloat16)


def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of ``weight`` (out, in) and one float32 scale per output channel."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def copy_bias(layer: nn.Module, linear: nn.Linear, dtype: torch.dtype) -> None:
    """``linear``'s bias into ``layer``'s, in ``dtype`` (both have one, or neither)."""
    bias = layer.bias
    if linear.bias is not None and isinstance(bias, torch.Tensor):
        bias.data.copy_(linear.bias.detach().to(dtype))


def runs_here(quantized: nn.Module, inputs: torch.Tensor) -> None:
    """Two inputs through ``quantized`` on its device: a kernel that refuses its shapes raises
    here, while the variant is built, not when it is served."""
    with torch.inference_mode():
        quantized(inputs[:2])


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(rows, features), row-major: the low-precision kernels refuse a strided view (a pooler's
    ``hidden_states[:, 0]``)."""
    return x.reshape(-1, x.shape[-1]).contiguous()


def _to_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x / scale.to(x.dtype)).clamp(-FP8_MAX, FP8_MAX).to(FP8)


def _to_int8_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of ``x`` as int8 with its own scale (per-token dynamic quantization)."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / 127.0
    return (x.float() / scale).round().clamp(-127, 127).to(torch.int8), scale


def _from_int32(
    acc: torch.Tensor, x_scale: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """The int8 matmul's int32 sums back to real values plus the bias, in the bias's dtype."""
    return (acc * x_scale * w_scale + bias.float()).to(bias.dtype)


_fused: dict[str, Any] = {}
# The shape the fused kernels are compiled on, a typical layer's (32 sequences of 128 tokens, 1024
# wide). Inductor sizes a dynamic-shape kernel's blocks from the input it first compiles on (its
# size hints): the fp8 cast compiled on a (2, 16) example took 710 us per call on BERT-base's
# 32768 x 768 rows at batch 256 on an H100, compiled on this shape 68 us
# (bench/results/gpu_kernels_nvidia_h100_80gb_hbm3.md, then _run3.md).
EXAMPLE_ROWS, EXAMPLE_WIDTH = 4096, 1024


def fused(fn: Any, example: Callable[[], tuple[Any, ...]]) -> Any:
    """``fn`` (element-wise work around a matmul) as one generated CUDA kernel for any shape,
    compiled once per process on first use and tried on ``example()``'s arguments (shaped like a
    real layer's: their sizes pick the kernel's blocks; made only when compiling, not per layer);
    eager where Inductor cannot compile here (one warning)."""
    if fn.__name__ not in _fused:
        try:
            compiled = torch.compile(fn, dynamic=True)
            compiled(*example())
            _fused[fn.__name__] = compiled
        except Exception as error:  # noqa: BLE001 - Dynamo raises many types; eager is the fallback
            logger.warning(
                "%s not fused (torch.compile failed: %s): several kernels per layer", fn.__name__, error
            )
            _fused[fn.__name__] = fn
    return _fused[fn.__name__]


class Float8Linear(nn.Module):
    """``y = x W^T + b`` with W in e4m3 (one scale for the tensor) and x cast to e4m3 with a
    static scale calibrated on validation inputs: one fused scaled matmul, no amax pass per call.
    Activations beyond the calibrated range saturate at ±448 x scale. On CUDA the input cast is
    one generated kernel (``fused``), or part of the model's generated kernels when the whole
    model is compiled (``torch_compile`` after ``fp8``)."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor
    input_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.register_buffer("weight_fp8", torch.zeros(out_features, in_features, dtype=FP8))
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32))
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=dtype), requires_grad=False) if bias else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, input_amax: float, dtype: torch.dtype) -> Float8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype)
        weight = linear.weight.detach().float()
        weight_scale = weight.abs().max().clamp(min=1e-12) / FP8_MAX
        layer.weight_fp8.copy_((weight / weight_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8))
        layer.weight_scale.fill_(weight_scale)
        layer.input_scale.fill_(max(input_amax, 1e-12) / FP8_MAX)
        copy_bias(layer, linear, dtype)
        return layer

    def on_device(self, device: str) -> None:
        self.to_fp8 = _to_fp8
        if device.startswith("cuda"):
            require_cuda_capability((8, 9), "fp8 (e4m3) matmuls")
            self.to_fp8 = fused(
                _to_fp8,
                lambda: (
                    torch.ones(EXAMPLE_ROWS, EXAMPLE_WIDTH, device=device, dtype=self.dtype),
                    self.input_scale,
                ),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = _flat(x)
        # inside a whole-model compile the cast is traced as it is, fused with the work before it
        to_fp8 = _to_fp8 if torch.compiler.is_compiling() else self.to_fp8
        x_fp8 = to_fp8(flat, self.input_scale)
        out = torch._scaled_mm(
            x_fp8,
            self.weight_fp8.t(),
            scale_a=self.input_scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=self.dtype,
        )
        return out.reshape(*x.shape[:-1], self.out_features)


WEIGHT_ONLY_KERNELS = ("packed", "dequantize", "auto")
FORMER_KERNEL_NAMES = {"int8pack": "packed"}  # as variants built before int4 had a choice recorded it


class WeightOnlyKernel:
    """The choice a weight-only layer makes per call: ``packed`` reads the low-bit weights inside
    PyTorch's packed-weight kernel (the least weight traffic, but on CUDA a kernel made for a few
    rows), ``dequantize`` widens them to bfloat16 first and multiplies on the tensor cores,
    ``auto`` takes the packed kernel on the CPU and for at most ``FEW_ROWS`` rows on CUDA."""

    FEW_ROWS: int
    kernel: str

    def reads_packed(self, on_cuda: bool, rows: int) -> bool:
        """Whether a call of ``rows`` rows runs the packed kernel (else widened weights)."""
        if self.kernel == "auto":
            return not on_cuda or rows <= self.FEW_ROWS
        return self.kernel == "packed"


class Int8WeightOnlyLinear(WeightOnlyKernel, nn.Module):
    """``y = x (s * W_int8)^T + b``: symmetric int8 weights with one scale per output channel;
    activations stay in ``dtype``. The packed kernel is ``torch._weight_int8pack_mm`` (half the
    weight traffic; on CUDA a plain kernel without tensor cores: 54-120x bf16's J/inference from
    32 x 128 rows on an H100)."""

    FEW_ROWS = 16
    weight_int8: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, kernel: str):
        super().__init__()
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.kernel = FORMER_KERNEL_NAMES.get(kernel, kernel)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=dtype))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=dtype), requires_grad=False) if bias else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype, kernel: str) -> Int8WeightOnlyLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype, kernel)
        codes, scale = int8_per_channel(linear.weight)
        layer.weight_int8.copy_(codes)
        layer.weight_scale.copy_(scale.to(dtype))
        copy_bias(layer, linear, dtype)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = _flat(x)
        if self.reads_packed(flat.is_cuda, flat.shape[0]):
            out = torch._weight_int8pack_mm(flat, self.weight_int8, self.weight_scale)
        else:
            out = torch.mm(flat, self.weight_int8.to(flat.dtype).t()) * self.weight_scale
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class Int8DynamicLinear(nn.Module):
    """``y = (s_x x_int8)(s_w W_int8)^T + b``: int8 weights (one scale per output channel) and
    activations quantized to int8 per row at each call, multiplied on the int8 tensor cores
    (``torch._int_mm``, int32 accumulation). The kernel wants more than 16 rows: fewer are padded
    with zero rows. On CUDA the row quantization is one generated kernel (``fused``)."""

    MIN_ROWS = 17
    weight_int8_t: torch.Tensor
    weight_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        # stored (in, out): the column-major operand _int_mm reads, transposed once at build
        self.register_buffer("weight_int8_t", torch.zeros(in_features, out_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=dtype), requires_grad=False) if bias else None
        )
        # a layer without a bias adds this zero: one epilogue for both (not saved with the variant)
        self.register_buffer("no_bias", torch.zeros((), dtype=dtype), persistent=False)
        self.to_int8_rows: Any = _to_int8_rows  # the fused kernels once placed on a GPU
        self.from_int32: Any = _from_int32

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype) -> Int8DynamicLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype)
        codes, scale = int8_per_channel(linear.weight)
        layer.weight_int8_t.copy_(codes.t())
        layer.weight_scale.copy_(scale)
        copy_bias(layer, linear, dtype)
        return layer

    def on_device(self, device: str) -> None:
        self.to_int8_rows, self.from_int32 = _to_int8_rows, _from_int32
        if device.startswith("cuda"):
            require_cuda_capability((7, 5), "int8 tensor-core matmuls (torch._int_mm)")
            shape = (EXAMPLE_ROWS, EXAMPLE_WIDTH)
            self.to_int8_rows = fused(
                _to_int8_rows, lambda: (torch.ones(shape, device=device, dtype=self.dtype),)
            )
            # the int32 sums' scaling, bias and cast: one kernel instead of four over the output
            self.from_int32 = fused(
                _from_int32,
                lambda: (
                    torch.ones(shape, device=device, dtype=torch.int32),
                    torch.ones(EXAMPLE_ROWS, 1, device=device),
                    torch.ones(EXAMPLE_WIDTH, device=device),
                    torch.ones(EXAMPLE_WIDTH, device=device, dtype=self.dtype),
                ),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = _flat(x)
        rows = flat.shape[0]
        if rows < self.MIN_ROWS:
            flat = torch.nn.functional.pad(flat, (0, 0, 0, self.MIN_ROWS - rows))
        x_int8, x_scale = self.to_int8_rows(flat)
        acc = torch._int_mm(x_int8, self.weight_int8_t)[:rows]
        bias = self.no_bias if self.bias is None else self.bias
        out = self.from_int32(acc, x_scale[:rows], self.weight_scale, bias)
        return out.reshape(*x.shape[:-1], self.out_features)


def _int4_codes(packed: torch.Tensor) -> torch.Tensor:
    """The (out, in) 4-bit codes of ``packed`` (out, in / 2), two per byte, high nibble first."""
    return torch.stack([packed >> 4, packed & 0xF], dim=-1).reshape(packed.shape[0], -1)


def _int4_to_bfloat16(packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """The (out, in) bfloat16 weights of two-codes-per-byte int4 ``packed`` (out, in / 2) and its
    (groups, out, 2) scale-and-zero table: ``(q - 8) * scale + zero`` per group."""
    codes = _int4_codes(packed).reshape(packed.shape[0], -1, group_size)
    table = scales_and_zeros.transpose(0, 1)  # (out, groups, 2)
    weights = (codes.to(torch.bfloat16) - 8) * table[..., :1] + table[..., 1:]
    return weights.reshape(packed.shape[0], -1)


class Int4WeightOnlyLinear(WeightOnlyKernel, nn.Module):
    """``y = x W^T + b`` with W in groups of ``group_size`` input weights, each group's 4-bit
    codes q in [0, 15] read as ``(q - 8) * scale + zero`` (tinygemm's convention). Stored as two
    codes per byte (high nibble first) and a (groups, out, 2) scale-and-zero table; ``on_device``
    packs the codes into the tiles of that device's kernel. Activations run in bfloat16. The packed
    kernel is tinygemm (``_weight_int4pack_mm``): on an H100 0.8-1.8x bf16's J/inference for one
    sequence of 128 tokens, 3.8-8.3x from 32 of them; ``dequantize`` widens the weights in one
    generated kernel per call (CUDA) and multiplies on the tensor cores."""

    INNER_K_TILES = 8  # the CUDA kernel's tiling; in_features must be a multiple of 16 x this
    FEW_ROWS = 128  # one sequence of 128 tokens: where tinygemm measured its best
    weight_int4x2: torch.Tensor
    scales_and_zeros: torch.Tensor

    def __init__(
        self, in_features: int, out_features: int, bias: bool, group_size: int, kernel: str = "packed"
    ):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.kernel = FORMER_KERNEL_NAMES.get(kernel, kernel)
        self.register_buffer("weight_int4x2", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer(
            "scales_and_zeros",
            torch.zeros(in_features // group_size, out_features, 2, dtype=torch.bfloat16),
        )
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=torch.bfloat16), requires_grad=False)
            if bias
            else None
        )
        self._packed: tuple[str, torch.Tensor] | None = None  # (device type, kernel layout)
        self.to_bfloat16: Any = _int4_to_bfloat16  # one generated kernel once placed on a GPU

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int, kernel: str = "packed") -> Int4WeightOnlyLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size, kernel)
        rows, cols = linear.weight.shape
        groups = linear.weight.detach().float().reshape(rows, cols // group_size, group_size)
        low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-6)
        codes = ((groups - low) / scale).round().clamp(0, 15).to(torch.uint8).reshape(rows, cols)
        layer.weight_int4x2.copy_(codes[:, ::2] << 4 | codes[:, 1::2])
        zero = low + 8 * scale
        table = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], dim=-1).transpose(0, 1)
        layer.scales_and_zeros.copy_(table.to(torch.bfloat16))
        copy_bias(layer, linear, torch.bfloat16)
        return layer

    def codes(self) -> torch.Tensor:
        """The 4-bit codes, one per weight (out_features, in_features), as int32."""
        return _int4_codes(self.weight_int4x2.to(torch.int32))

    def on_device(self, device: str) -> None:
        self.to_bfloat16 = _int4_to_bfloat16
        if device.startswith("cuda"):
            require_cuda_capability((8, 0), "int4 weight-only matmuls (tinygemm)")
            layout = torch.ops.aten._convert_weight_to_int4pack(self.weight_int4x2, self.INNER_K_TILES)
            if self.kernel != "packed":
                self.to_bfloat16 = fused(
                    _int4_to_bfloat16,
                    lambda: (
                        torch.zeros(EXAMPLE_WIDTH, EXAMPLE_WIDTH // 2, device=device, dtype=torch.uint8),
                        torch.ones(
                            EXAMPLE_WIDTH // 128, EXAMPLE_WIDTH, 2, device=device, dtype=torch.bfloat16
                        ),
                        128,
                    ),
                )
        else:
            layout = torch.ops.aten._convert_weight_to_int4pack_for_cpu(self.codes(), 1)
        self._packed = (torch.device(device).type, layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is None or self._packed[0] != x.device.type:
            self.on_device(x.device.type)
        assert self._packed is not None
        flat = _flat(x).to(torch.bfloat16)
        if not self.reads_packed(x.is_cuda, flat.shape[0]):
            weights = self.to_bfloat16(self.weight_int4x2, self.scales_and_zeros, self.group_size)
            out = torch.mm(flat, weights.t())
        elif x.is_cuda:
            out = torch.ops.aten._weight_int4pack_mm(
                flat, self._packed[1], self.group_size, self.scales_and_zeros
            )
        else:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                flat, self._packed[1], self.group_size, self.scales_and_zeros
            )
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

"""2:4 semi-structured sparsity in PyTorch: in every group of 4 consecutive input weights of a
Linear layer, the 2 of smallest magnitude are zeroed (50% sparsity in the pattern that NVIDIA
Ampere and later tensor cores skip).

The artifact holds dense weights with the 2:4 zeros (safetensors cannot hold PyTorch's sparse
tensor subclass). On a GPU of compute capability 8.0 or later, placing the model there swaps the
weights for ``torch.sparse.to_sparse_semi_structured`` tensors (cuSPARSELt/CUTLASS kernels; fp16,
bf16 or int8 weights, which is why the GPU runs chain this after ``half_precision``). On a CPU
the pattern is only zeros multiplied densely: same compute, smaller compressed size; that is what
the CPU rows of the study show, and the notes say so. The pattern's layers are
``SemiStructuredLinear`` modules, which switch to the sparse kernels when the runtime places the
model on a GPU (``runtimes.pytorch.place``); layers the kernels refuse stay dense, with a warning.

Pruning is one-shot magnitude within each group (the NVIDIA ASP recipe), with an optional short
fine-tune that keeps the pattern (masks through ``torch.nn.utils.prune.custom_from_mask``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.finetune import finetune_on_context

GROUP, KEEP = 4, 2


# The sparse kernels a GPU runs the 2:4 layers on. cuSPARSELt (PyTorch's default) cost a fixed
# ~60 ms per BERT-base forward on an H100 whatever the batch (72 layers: it sets up its matmul
# plan at every call; bench/results/evaluate_h100_80gb_hbm3.md); CUTLASS's kernels set nothing up
# per call but PyTorch builds them for compute capability 8.x only (an H100 refuses them at the
# first matmul). `auto` takes CUTLASS on 8.x and cuSPARSELt on any other GPU.
KERNEL_NOTES = {
    "auto": "CUTLASS's (8.x) or cuSPARSELt's (8.0+)",
    "cutlass": "CUTLASS's (8.x)",
    "cusparselt": "cuSPARSELt's (8.0+)",
}
KERNELS = tuple(KERNEL_NOTES)
KERNEL_BEFORE_THE_SETTING = "cusparselt"  # what a recipe without ``kernel`` was built for


@dataclass(frozen=True)
class SemiStructuredSettings:
    finetune_steps: int = 0
    learning_rate: float = 1e-4
    batch_size: int = 32
    keep_output_layer: bool = True
    kernel: str = "auto"


def two_of_four_mask(weight: Any) -> Any:
    """1 where a weight survives: the 2 largest |w| of every 4 consecutive along the input axis."""
    import torch

    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // GROUP, GROUP)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(KEEP, dim=-1).indices, True)
    return keep.reshape(rows, cols).to(weight.dtype)


def sparsifiable_linears(model: Any, keep_output_layer: bool) -> list[Any]:
    """The Linear layers whose input width is a multiple of 4 (the pattern runs along it)."""
    from torch import nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if keep_output_layer and linears:
        linears = linears[:-1]
    return [m for m in linears if m.in_features % GROUP == 0]


def mark_semi_structured(model: Any, layers: list[str], kernel: str) -> Any:
    """``model`` with the named Linear layers as ``SemiStructuredLinear`` (same tensors), in place:
    the layers that switch to the sparse ``kernel`` when placed on a GPU."""
    from green_deploy.optimize.torch_modules import SemiStructuredLinear

    for name in layers:
        layer = model.get_submodule(name)
        layer.__class__ = SemiStructuredLinear
        layer.sparse_backend = kernel
    return model


def accelerate(model: Any) -> tuple[int, int]:
    """Place a CUDA model's 2:4 layers on the sparse kernels, in place; (layers on the sparse
    kernels, 2:4 layers left dense because the kernels refuse their shape or dtype)."""
    from green_deploy.optimize.torch_modules import SemiStructuredLinear

    layers = [m for m in model.modules() if isinstance(m, SemiStructuredLinear)]
    for layer in layers:
        layer.on_device("cuda")
    accelerated = sum(layer.sparse_kernel for layer in layers)
    return accelerated, len(layers) - accelerated


class SemiStructuredSparsity:
    name = "semi_structured_sparsity"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> SemiStructuredSettings:
        s = parse_settings(SemiStructuredSettings, raw, f"technique {self.name!r}")
        if s.finetune_steps < 0:
            raise ConfigError(f"technique {self.name!r}: finetune_steps must be >= 0, got {s.finetune_steps}")
        if s.kernel not in KERNELS:
            raise ConfigError(
                f"technique {self.name!r}: kernel must be one of {', '.join(KERNELS)}, got {s.kernel!r}"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        import torch
        from torch.nn.utils import prune

        s = self.settings(settings)
        sparse = copy.deepcopy(model)
        targets = sparsifiable_linears(sparse, s.keep_output_layer)
        if not targets:
            raise NotApplicable("no Linear layer with an input width divisible by 4 for the 2:4 pattern")
        with torch.no_grad():
            for module in targets:
                prune.custom_from_mask(module, "weight", two_of_four_mask(module.weight))
        extra: dict[str, Any] = {"sparse_layers": len(targets)}
        notes = f"2:4 magnitude pattern on {len(targets)} Linear layers"
        if s.finetune_steps:
            losses = finetune_on_context(sparse, context, s.finetune_steps, s.learning_rate, s.batch_size)
            extra["finetune_loss"] = losses[-1]
            notes += f", fine-tuned {s.finetune_steps} steps keeping the pattern"
        for module in targets:
            prune.remove(module, "weight")
        names = {id(module): name for name, module in sparse.named_modules()}
        layers = [names[id(module)] for module in targets]
        mark_semi_structured(sparse, layers, s.kernel)
        extra["rebuild_recipe"] = {"layers": layers, "kernel": s.kernel}
        notes += (
            f"; dense zeros on CPU (no compute saved), {KERNEL_NOTES[s.kernel]} sparse tensor-core kernels on CUDA "
            "when the weights are float16/bfloat16 (SemiStructuredLinear, switched when placed on the GPU)"
        )
        return OptimizedModel("torch", "pytorch", sparse.eval(), ("cpu", "cuda"), notes=notes, extra=extra)


TECHNIQUE = SemiStructuredSparsity()

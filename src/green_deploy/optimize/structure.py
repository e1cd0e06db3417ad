"""Replaying the structural change each optimization step made to a PyTorch module.

A PyTorch variant's file holds tensors only; loading it rebuilds the baseline structure and hands
each recorded step to ``replay_structure`` (``runtimes.pytorch.load_variant``), which rebuilds what
the technique built (a dtype cast, int8 Linear modules, fp8 or int4 layers, removed channels, a
graph wrapper) before the tensors load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def replay_structure(model: Any, step: Mapping[str, Any]) -> Any:
    """``model`` with the structure ``step`` (a ``variant_config.json`` step) made; frameworks and
    techniques are imported here, only for the step replayed."""
    import torch

    technique, settings = step["technique"], step.get("settings", {})
    recipe: Any = step.get("recipe")  # JSON; only the techniques that index it record one
    if technique == "half_precision":
        from green_deploy.optimize.torch_modules import CastInputs

        dtype = getattr(torch, settings.get("dtype", "float16"))
        return CastInputs(model.to(dtype), dtype)
    if technique == "dynamic_int8":
        from green_deploy.optimize.techniques.dynamic_int8 import quantize_linear_layers

        return quantize_linear_layers(
            model, settings.get("backend", "fbgemm"), settings.get("keep_output_layer", False)
        )
    if technique == "static_int8":
        from green_deploy.optimize.techniques.static_int8 import quantize_static

        example = torch.zeros(recipe["example_shape"], dtype=getattr(torch, recipe["example_dtype"]))
        return quantize_static(model, settings.get("backend", "x86"), example)
    if technique == "torch_compile":
        from green_deploy.optimize.techniques.torch_compile import TECHNIQUE, compile_model

        parsed = TECHNIQUE.settings(settings)
        return compile_model(model, parsed.mode, parsed.dynamic)
    if (
        technique == "semi_structured_sparsity" and recipe
    ):  # recorded since the layers switch kernels on a GPU
        from green_deploy.optimize.techniques.semi_structured_sparsity import (
            KERNEL_BEFORE_THE_SETTING,
            mark_semi_structured,
        )

        return mark_semi_structured(model, recipe["layers"], recipe.get("kernel", KERNEL_BEFORE_THE_SETTING))
    if technique == "fp8":
        from green_deploy.optimize.techniques.fp8 import fp8_structure

        return fp8_structure(model, recipe["layers"], {})
    if technique == "int8_dynamic":
        from green_deploy.optimize.techniques.int8_dynamic import int8_dynamic_structure

        return int8_dynamic_structure(model, recipe["layers"])
    if technique == "weight_only":
        from green_deploy.optimize.techniques.weight_only import TECHNIQUE as WEIGHT_ONLY
        from green_deploy.optimize.techniques.weight_only import weight_only_structure

        return weight_only_structure(model, recipe["layers"], WEIGHT_ONLY.settings(settings))
    if technique == "cuda_graph":
        from green_deploy.optimize.techniques.cuda_graph import TECHNIQUE as CUDA_GRAPH
        from green_deploy.optimize.torch_modules import CudaGraphed

        return CudaGraphed(model, CUDA_GRAPH.settings(settings).max_shapes)
    if technique == "structured_pruning":
        from green_deploy.optimize.techniques.structured_pruning import restore_structure

        return restore_structure(model, recipe)
    return model  # unstructured pruning changes values, not structure

"""Saving, loading and measuring variant artifacts.

PyTorch variants are stored as safetensors (no pickled code) plus ``variant_config.json`` (the
family, architecture and the steps that produced it); loading rebuilds the baseline structure,
replays each step's structural change (a dtype cast, int8 Linear modules, removed channels) and
loads the stored tensors strictly. Dynamic-int8 Linear weights are stored as int8 with their
scale and zero point, so the file size is the real int8 size. Keras variants are ``.keras``
files, TFLite variants ``.tflite`` flatbuffers. Sizes, zeros and parameter counts are measured
on these files, not taken from the technique's nominal settings.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_deploy.errors import ArtifactError
from green_deploy.optimize.base import OptimizedModel
from green_deploy.optimize.spec import VariantSpec

TORCH_FILE = "model.safetensors"
CONFIG_FILE = "variant_config.json"
KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"


@dataclass(frozen=True)
class ArtifactStats:
    """Measured on the saved files. ``effective_sparsity`` is the fraction of exact zeros among
    weight matrices (tensors of two or more dimensions); ``compressed_size_bytes`` is the files
    deflated (zlib level 6), which is where unstructured sparsity saves storage."""

    files: tuple[str, ...]
    size_on_disk_bytes: int
    compressed_size_bytes: int
    n_parameters: int
    n_nonzero_parameters: int
    effective_sparsity: float


def save_variant(
    optimized: OptimizedModel, spec: VariantSpec, base_config: dict[str, Any], folder: Path
) -> list[str]:
    """Write the variant into ``folder``; the list of files written (relative names)."""
    folder.mkdir(parents=True, exist_ok=True)
    if optimized.runtime == "tflite":
        (folder / TFLITE_FILE).write_bytes(optimized.model)
        return [TFLITE_FILE]
    if optimized.runtime == "keras":
        from green_deploy.zoo.artifacts import save_keras_model

        save_keras_model(optimized.model, folder / KERAS_FILE)
        return [KERAS_FILE]
    from safetensors.torch import save_file

    save_file(torch_variant_tensors(optimized.model), str(folder / TORCH_FILE))
    config = {
        **base_config,
        "steps": [{"technique": s.technique, "settings": s.settings} for s in spec.steps],
    }
    if "rebuild_recipe" in optimized.extra:  # structured pruning: how to rebuild the shapes
        config["structure"] = optimized.extra["rebuild_recipe"]
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return [TORCH_FILE, CONFIG_FILE]


def torch_variant_tensors(model: Any) -> dict[str, Any]:
    """Every tensor of ``model``; dynamic int8 Linear weights as int8 + scale + zero point."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    tensors: dict[str, Any] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, DynamicLinear):
            weight, bias = module._packed_params._weight_bias()
            tensors[f"{prefix}weight_int8"] = weight.int_repr().contiguous()
            tensors[f"{prefix}weight_scale"] = torch.tensor(weight.q_scale(), dtype=torch.float64)
            tensors[f"{prefix}weight_zero_point"] = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
            if bias is not None:
                tensors[f"{prefix}bias"] = bias.detach().contiguous()
            continue
        for key, value in [*module._parameters.items(), *module._buffers.items()]:
            if value is not None and not value.is_quantized:
                tensors[f"{prefix}{key}"] = value.detach().contiguous()
    return tensors


def load_torch_variant(folder: Path) -> Any:
    """Rebuild a PyTorch variant: baseline structure, each step's structural change, stored tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from green_deploy.zoo.families import get_family

    for required in (folder / TORCH_FILE, folder / CONFIG_FILE):
        if not required.is_file():
            raise ArtifactError(
                f"variant artifact incomplete: {required} is missing; re-run `kedro run --pipeline=optimize`"
            )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        tensors = load_file(str(folder / TORCH_FILE))
    except (SafetensorError, json.JSONDecodeError, OSError) as error:
        raise ArtifactError(f"variant artifact {folder} is corrupt: {error}") from error
    model = get_family(config["family"]).build_torch(config["architecture"], config["n_outputs"]).eval()
    for step in config["steps"]:
        model = _replay_structure(model, step, config)
    expected = set(torch_variant_tensors(model))
    if expected != set(tensors):
        missing, unexpected = sorted(expected - set(tensors))[:5], sorted(set(tensors) - expected)[:5]
        raise ArtifactError(
            f"variant artifact {folder} does not fit its recipe: missing {missing}, unexpected {unexpected}"
        )
    _assign(model, tensors, folder)
    return model.eval()


def _assign(model: Any, tensors: dict[str, Any], folder: Path) -> None:
    """Put every stored tensor back where ``torch_variant_tensors`` took it from."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    with torch.no_grad():
        for name, module in model.named_modules():
            prefix = f"{name}." if name else ""
            if isinstance(module, DynamicLinear):
                weight = torch._make_per_tensor_quantized_tensor(
                    tensors[f"{prefix}weight_int8"],
                    float(tensors[f"{prefix}weight_scale"]),
                    int(tensors[f"{prefix}weight_zero_point"]),
                )
                module.set_weight_bias(weight, tensors.get(f"{prefix}bias"))
                continue
            for key, value in [*module._parameters.items(), *module._buffers.items()]:
                if value is None or value.is_quantized:
                    continue
                stored = tensors[f"{prefix}{key}"]
                if stored.shape != value.shape or stored.dtype != value.dtype:
                    raise ArtifactError(
                        f"variant artifact {folder}: {prefix}{key} is {tuple(stored.shape)} {stored.dtype}, "
                        f"the recipe builds {tuple(value.shape)} {value.dtype}"
                    )
                value.copy_(stored)


def _replay_structure(model: Any, step: dict[str, Any], config: dict[str, Any]) -> Any:
    import torch

    technique, settings = step["technique"], step.get("settings", {})
    if technique == "half_precision":
        from green_deploy.optimize.torch_modules import CastInputs

        dtype = getattr(torch, settings.get("dtype", "float16"))
        return CastInputs(model.to(dtype), dtype)
    if technique == "dynamic_int8":
        from green_deploy.optimize.techniques.dynamic_int8 import quantize_linear_layers

        return quantize_linear_layers(model, settings.get("backend", "fbgemm"))
    if technique == "structured_pruning":
        from green_deploy.optimize.techniques.structured_pruning import restore_structure

        return restore_structure(model, config["structure"])
    return model  # unstructured pruning changes values, not structure


def load_variant(folder: Path, runtime: str) -> Any:
    """The variant's model object for ``runtime`` (module, Keras model or flatbuffer bytes)."""
    if runtime == "tflite":
        path = folder / TFLITE_FILE
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; re-run `kedro run --pipeline=optimize`")
        return path.read_bytes()
    if runtime == "keras":
        from green_deploy.zoo.artifacts import load_keras_model

        return load_keras_model(folder / KERAS_FILE)
    return load_torch_variant(folder)


def measure_artifact(folder: Path, files: list[str], runtime: str) -> ArtifactStats:
    paths = [folder / name for name in files]
    data = b"".join(p.read_bytes() for p in paths)
    total, nonzero, matrix_total, matrix_zeros = _count_weights(folder, runtime)
    return ArtifactStats(
        files=tuple(files),
        size_on_disk_bytes=sum(p.stat().st_size for p in paths),
        compressed_size_bytes=len(zlib.compress(data, 6)),
        n_parameters=total,
        n_nonzero_parameters=nonzero,
        effective_sparsity=matrix_zeros / matrix_total if matrix_total else 0.0,
    )


def _count_weights(folder: Path, runtime: str) -> tuple[int, int, int, int]:
    """(parameters, non-zero parameters, weight-matrix elements, zero weight-matrix elements)."""
    import numpy as np

    arrays: list[np.ndarray] = []
    if runtime == "pytorch":
        from safetensors.numpy import load_file

        try:
            arrays = [
                v
                for k, v in load_file(str(folder / TORCH_FILE)).items()
                if not k.endswith(("weight_scale", "weight_zero_point"))
            ]
        except TypeError:  # bfloat16 has no numpy dtype: count through torch
            from safetensors.torch import load_file as load_torch

            arrays = [v.float().numpy() for k, v in load_torch(str(folder / TORCH_FILE)).items()]
    elif runtime == "keras":
        from green_deploy.zoo.artifacts import load_keras_model

        arrays = [np.asarray(w) for w in load_keras_model(folder / KERAS_FILE).weights]
    else:
        from green_deploy.optimize.tflite_runtime import tflite_tensor_stats

        stats = tflite_tensor_stats((folder / TFLITE_FILE).read_bytes())
        return (
            stats["n_parameters"],
            stats["n_parameters"] - stats["n_zeros"],
            stats["n_parameters"],
            stats["n_zeros"],
        )
    total = sum(a.size for a in arrays)
    nonzero = sum(int(np.count_nonzero(a)) for a in arrays)
    matrices = [a for a in arrays if a.ndim >= 2]
    matrix_total = sum(a.size for a in matrices)
    matrix_zeros = matrix_total - sum(int(np.count_nonzero(a)) for a in matrices)
    return total, nonzero, matrix_total, matrix_zeros

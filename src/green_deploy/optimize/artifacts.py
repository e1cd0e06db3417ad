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
from collections import OrderedDict
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
ONNX_FILE = "model.onnx"
# Bumped when the PyTorch tensor layout changes; part of every variant's cache key.
FORMAT_VERSION = 2


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
    optimized: OptimizedModel,
    spec: VariantSpec,
    base_config: dict[str, Any],
    folder: Path,
    recipes: list[Any] | None = None,
) -> list[str]:
    """Write the variant into ``folder``; the list of files written (relative names). ``recipes``:
    per step, what rebuilds the structure it made (``extra["rebuild_recipe"]``), or None."""
    folder.mkdir(parents=True, exist_ok=True)
    if optimized.runtime == "tflite":
        (folder / TFLITE_FILE).write_bytes(optimized.model)
        return [TFLITE_FILE]
    if optimized.runtime == "onnxruntime":
        (folder / ONNX_FILE).write_bytes(optimized.model)
        return [ONNX_FILE]
    if optimized.runtime == "keras":
        from green_deploy.zoo.artifacts import save_keras_model

        save_keras_model(optimized.model, folder / KERAS_FILE)
        return [KERAS_FILE]
    from safetensors.torch import save_file

    save_file(torch_variant_tensors(optimized.model), str(folder / TORCH_FILE))
    recipes = recipes or [None] * len(spec.steps)
    config = {
        **base_config,
        "format": FORMAT_VERSION,
        # A step's recipe says how to rebuild the structure it made (removed channels, traced graph).
        "steps": [
            {"technique": s.technique, "settings": s.settings, "recipe": recipe}
            for s, recipe in zip(spec.steps, recipes, strict=True)
        ],
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return [TORCH_FILE, CONFIG_FILE]


# Suffixes of the tensors that encode one quantized tensor; their int values are weights, the
# rest are quantization parameters (not counted as parameters).
_INT_REPR = ".int_repr"
_QPARAM_SUFFIXES = (".q_scale", ".q_zero_point", ".q_scales", ".q_zero_points", ".q_axis")


def torch_variant_tensors(model: Any) -> dict[str, Any]:
    """The model's state dict as plain tensors: a quantized tensor becomes its integer values plus
    its scale(s), zero point(s) and axis; tuples (packed int8 weights and bias) are flattened;
    non-tensor entries (dtypes) belong to the structure and are rebuilt by it."""
    tensors: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        _encode(key, value, tensors)
    return tensors


def _encode(key: str, value: Any, out: dict[str, Any]) -> None:
    import torch

    if isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            _encode(f"{key}.{index}", item, out)
    elif isinstance(value, torch.Tensor) and value.is_quantized:
        out[key + _INT_REPR] = value.int_repr().contiguous()
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            out[key + ".q_scale"] = torch.tensor(value.q_scale(), dtype=torch.float64)
            out[key + ".q_zero_point"] = torch.tensor(value.q_zero_point(), dtype=torch.int64)
        else:
            out[key + ".q_scales"] = value.q_per_channel_scales().contiguous()
            out[key + ".q_zero_points"] = value.q_per_channel_zero_points().contiguous()
            out[key + ".q_axis"] = torch.tensor(value.q_per_channel_axis(), dtype=torch.int64)
    elif isinstance(value, torch.Tensor):
        out[key] = value.detach().contiguous()


def _decode(key: str, like: Any, stored: dict[str, Any], used: set[str], folder: Path) -> Any:
    """The value for ``key`` rebuilt from ``stored``, shaped like the fresh structure's ``like``."""
    import torch

    if isinstance(like, (tuple, list)):
        return type(like)(_decode(f"{key}.{i}", item, stored, used, folder) for i, item in enumerate(like))
    if not isinstance(like, torch.Tensor):
        return like  # a dtype or other structural entry
    if like.is_quantized:
        names = [key + _INT_REPR, key + ".q_scale", key + ".q_zero_point"]
        if like.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            values = _take(names, stored, used, folder)
            return torch._make_per_tensor_quantized_tensor(values[0], float(values[1]), int(values[2]))
        names = [key + _INT_REPR, key + ".q_scales", key + ".q_zero_points", key + ".q_axis"]
        values = _take(names, stored, used, folder)
        return torch._make_per_channel_quantized_tensor(values[0], values[1], values[2], int(values[3]))
    (value,) = _take([key], stored, used, folder)
    if value.shape != like.shape or value.dtype != like.dtype:
        raise ArtifactError(
            f"variant artifact {folder}: {key} is {tuple(value.shape)} {value.dtype}, "
            f"the recipe builds {tuple(like.shape)} {like.dtype}"
        )
    return value


def _take(names: list[str], stored: dict[str, Any], used: set[str], folder: Path) -> list[Any]:
    missing = [name for name in names if name not in stored]
    if missing:
        raise ArtifactError(f"variant artifact {folder} does not fit its recipe: missing {missing[:5]}")
    used.update(names)
    return [stored[name] for name in names]


def rebuild_command(folder: Path) -> str:
    """The command that rebuilds the variant saved in ``<variants_dir>/<model_id>/<variant_id>``."""
    return (
        f"rebuild it with `kedro run --pipeline=optimize --namespaces={folder.parent.name} "
        f'--params "optimize.only={folder.name}"`'
    )


def load_torch_variant(folder: Path) -> Any:
    """Rebuild a PyTorch variant: baseline structure, each step's structural change, stored tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from green_deploy.zoo.families import get_family

    for required in (folder / TORCH_FILE, folder / CONFIG_FILE):
        if not required.is_file():
            raise ArtifactError(
                f"variant artifact incomplete: {required} is missing; {rebuild_command(folder)}"
            )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        tensors = load_file(str(folder / TORCH_FILE))
    except (SafetensorError, json.JSONDecodeError, OSError) as error:
        raise ArtifactError(
            f"variant artifact {folder} is corrupt ({error}); {rebuild_command(folder)}"
        ) from error
    if config.get("format") != FORMAT_VERSION:
        raise ArtifactError(
            f"variant artifact {folder} has format {config.get('format')}, this code reads "
            f"{FORMAT_VERSION}; {rebuild_command(folder)}"
        )
    model = get_family(config["family"]).build_torch(config["architecture"], config["n_outputs"]).eval()
    for step in config["steps"]:
        model = _replay_structure(model, step)
    used: set[str] = set()
    fresh = model.state_dict()
    state = OrderedDict((key, _decode(key, like, tensors, used, folder)) for key, like in fresh.items())
    state._metadata = fresh._metadata  # type: ignore[attr-defined]  # module versions: quantized loaders read them
    if set(tensors) - used:
        raise ArtifactError(
            f"variant artifact {folder} does not fit its recipe: unexpected {sorted(set(tensors) - used)[:5]}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _replay_structure(model: Any, step: dict[str, Any]) -> Any:
    import torch

    technique, settings, recipe = step["technique"], step.get("settings", {}), step.get("recipe")
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
    if technique == "structured_pruning":
        from green_deploy.optimize.techniques.structured_pruning import restore_structure

        return restore_structure(model, recipe)
    return model  # unstructured pruning changes values, not structure


def load_variant(folder: Path, runtime: str) -> Any:
    """The variant's model object for ``runtime`` (module, Keras model, flatbuffer or ONNX bytes)."""
    if runtime in ("onnxruntime", "tflite"):
        path = folder / (ONNX_FILE if runtime == "onnxruntime" else TFLITE_FILE)
        rebuild = rebuild_command(folder)
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; {rebuild}")
        data = path.read_bytes()
        try:
            _parse_serialized(runtime, data)
        except Exception as error:  # protobuf's DecodeError, LiteRT's ValueError: the file is damaged
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(
                f"{path} is not a readable {runtime} model ({reason[:200]}); {rebuild}"
            ) from error
        return data
    if runtime == "keras":
        from green_deploy.zoo.artifacts import load_keras_model

        return load_keras_model(folder / KERAS_FILE, rebuild_command(folder))
    return load_torch_variant(folder)


def _parse_serialized(runtime: str, data: bytes) -> None:
    """Parse an ONNX graph or a TFLite flatbuffer as its runtime will, so a truncated or corrupt
    file is named here rather than failing inside the runtime later."""
    if runtime == "onnxruntime":
        import onnx

        onnx.load_model_from_string(data)
    else:
        from green_deploy.optimize.tflite_runtime import interpreter

        interpreter(data)


def deflated_size(data: bytes, parts: int = 2) -> int:
    """Bytes of ``data`` deflated as zip does (zlib level 6), in ``parts`` pieces compressed in
    parallel threads (zlib releases the GIL; 90 MB took 2.5 s in one). Deflate looks back 32 KB,
    so cutting megabytes into pieces changes the size by a few bytes per cut."""
    from concurrent.futures import ThreadPoolExecutor

    step = max(1, -(-len(data) // parts))
    pieces = [data[start : start + step] for start in range(0, len(data), step)] or [b""]
    with ThreadPoolExecutor(len(pieces)) as pool:
        return sum(pool.map(lambda piece: len(zlib.compress(piece, 6)), pieces))


def measure_artifact(folder: Path, files: list[str], runtime: str) -> ArtifactStats:
    paths = [folder / name for name in files]
    data = b"".join(p.read_bytes() for p in paths)
    total, nonzero, matrix_total, matrix_zeros = _count_weights(folder, runtime)
    return ArtifactStats(
        files=tuple(files),
        size_on_disk_bytes=sum(p.stat().st_size for p in paths),
        compressed_size_bytes=deflated_size(data),
        n_parameters=total,
        n_nonzero_parameters=nonzero,
        effective_sparsity=matrix_zeros / matrix_total if matrix_total else 0.0,
    )


def _count_weights(folder: Path, runtime: str) -> tuple[int, int, int, int]:
    """(parameters, non-zero parameters, weight-matrix elements, zero weight-matrix elements)."""
    import numpy as np

    arrays: list[np.ndarray] = []
    if runtime == "pytorch":
        from safetensors.torch import load_file

        # Quantization parameters and scalars (activation scales, batch counters) are not weights;
        # a quantized weight counts by its integer values (symmetric int8: 0 is a zero weight).
        arrays = [
            v.float().numpy()
            for k, v in load_file(str(folder / TORCH_FILE)).items()
            if v.ndim > 0 and not k.endswith(_QPARAM_SUFFIXES)
        ]
    elif runtime == "keras":
        from green_deploy.zoo.artifacts import load_keras_model

        arrays = [np.asarray(w) for w in load_keras_model(folder / KERAS_FILE).weights]
    elif runtime == "onnxruntime":
        from green_deploy.optimize.onnx_runtime import onnx_tensor_stats

        stats = onnx_tensor_stats((folder / ONNX_FILE).read_bytes())
        return (
            stats["n_parameters"],
            stats["n_parameters"] - stats["n_zeros"],
            stats["n_matrix_parameters"],
            stats["n_matrix_zeros"],
        )
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

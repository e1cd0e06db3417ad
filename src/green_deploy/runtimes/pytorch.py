"""PyTorch models as safetensors (no pickled code) plus the JSON that rebuilds their structure.

A variant folder holds ``model.safetensors`` and ``variant_config.json`` (family, architecture and
the steps that produced it); loading rebuilds the baseline structure, replays each step's
structural change and loads the stored tensors strictly. Dynamic-int8 Linear weights are stored as
int8 with their scale and zero point, so the file size is the real int8 size. A zoo model's
``torch/`` folder (``model_config.json``) loads as the zoo saved it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from green_deploy.errors import ArtifactError
from green_deploy.runtimes.base import (
    Predict,
    ReplayStructure,
    Runtime,
    WeightCounts,
    count_arrays,
    keep_structure,
    rebuild_command,
)
from green_deploy.zoo.artifacts import TORCH_CONFIG

TORCH_FILE = "model.safetensors"
CONFIG_FILE = "variant_config.json"
# Bumped when the tensor layout changes; part of every variant's cache key.
FORMAT_VERSION = 2
# Suffixes of the tensors that encode one quantized tensor; their int values are weights, the
# rest are quantization parameters (not counted as parameters).
_INT_REPR = ".int_repr"
_QPARAM_SUFFIXES = (".q_scale", ".q_zero_point", ".q_scales", ".q_zero_points", ".q_axis")


class PyTorchRuntime(Runtime):
    name = "pytorch"
    framework = "torch"
    model_files = ((TORCH_FILE, CONFIG_FILE), (TORCH_FILE, TORCH_CONFIG))
    devices = ("cpu", "cuda")
    preload_modules = ("torch",)
    image_packages = ("torch", "safetensors")
    rebuilds_structure = True

    def save(self, model: Any, folder: Path, config: Mapping[str, Any]) -> list[str]:
        from safetensors.torch import save_file

        save_file(variant_tensors(model), str(folder / TORCH_FILE))
        (folder / CONFIG_FILE).write_text(
            json.dumps({**config, "format": FORMAT_VERSION}, indent=2, sort_keys=True)
        )
        return [TORCH_FILE, CONFIG_FILE]

    def load(self, folder: Path, replay: ReplayStructure = keep_structure) -> Any:
        """A variant folder, or a zoo model's ``torch/`` folder (the torch baseline)."""
        if not (folder / CONFIG_FILE).is_file() and (folder / TORCH_CONFIG).is_file():
            from green_deploy.zoo.artifacts import load_torch_model

            return load_torch_model(folder)
        return load_variant(folder, replay)

    def predictor(
        self, model: Any, num_threads: int | None = None, device: str = "cpu", keras_mode: str = "graph"
    ) -> Predict:
        from green_deploy.zoo.inference import predict_torch

        place(model, device)
        return lambda x: predict_torch(model, x, device=device)

    def use_threads(self, num_threads: int | None) -> None:
        if num_threads is not None:
            import torch

            torch.set_num_threads(num_threads)

    def weight_counts(self, folder: Path) -> WeightCounts:
        from safetensors.torch import load_file

        # Quantization parameters and scalars (activation scales, batch counters) are not weights;
        # a quantized weight counts by its integer values (symmetric int8: 0 is a zero weight).
        return count_arrays(
            [
                v.float().numpy()
                for k, v in load_file(str(folder / TORCH_FILE)).items()
                if v.ndim > 0 and not k.endswith(_QPARAM_SUFFIXES)
            ]
        )

    def serving_path(self, keras_mode: str = "graph") -> str:
        return "PyTorch eager (inference_mode)"


def place(model: Any, device: str) -> Any:
    """``model`` moved to ``device``, then each module with an ``on_device(device)`` method told
    where it now runs: layers whose kernels depend on the device (fp8, int4 tiles, 2:4 sparse
    weights) switch to them there, or refuse a GPU too old for them."""
    model.to(device)
    for module in model.modules():
        on_device = getattr(module, "on_device", None)
        if callable(on_device):
            on_device(device)
    return model


def variant_tensors(model: Any) -> dict[str, Any]:
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


def load_variant(folder: Path, replay: ReplayStructure = keep_structure) -> Any:
    """Rebuild a PyTorch variant: baseline structure, each step's structural change (``replay``),
    stored tensors."""
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
        model = replay(model, step)
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

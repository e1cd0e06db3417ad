"""The runtimes a model is saved for and served by, one module each; a new runtime is a new module
and one entry here. Importing this package imports no framework (each runtime imports its own
inside its methods)."""

from __future__ import annotations

from pathlib import Path

from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.runtimes.base import Predict, Runtime, WeightCounts
from green_deploy.runtimes.keras import KerasRuntime
from green_deploy.runtimes.onnxruntime import OnnxRuntime
from green_deploy.runtimes.pytorch import PyTorchRuntime
from green_deploy.runtimes.tflite import TfliteRuntime

RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime for runtime in (PyTorchRuntime(), KerasRuntime(), TfliteRuntime(), OnnxRuntime())
}


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise ConfigError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


# Where a model can be placed here: PyTorch on CUDA too; TensorFlow is not installed on the GPU
# machines and the ONNX Runtime and LiteRT builds here are CPU builds (``Runtime.devices``).
DEVICES = ("cpu", "cuda")


def check_device(runtime: str, device: str) -> None:
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    if device not in get_runtime(runtime).devices:
        raise ConfigError(f"the {runtime} runtime serves on the CPU only here, not on {device}")


def available_devices() -> tuple[str, ...]:
    """Where this machine can serve: the CPU, and CUDA where PyTorch finds a GPU and its driver."""
    try:
        import torch
    except ImportError:
        return ("cpu",)
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def device_here(devices: tuple[str, ...]) -> str | None:
    """Where a model declared for ``devices`` runs on this machine: its GPU where the model may run
    there (where a GPU machine serves it), else the CPU; None where it may run on neither."""
    return next((d for d in ("cuda", "cpu") if d in devices and d in available_devices()), None)


def runtimes_on(device: str) -> tuple[str, ...]:
    """The runtimes that can place a model on ``device`` here."""
    return tuple(name for name, runtime in RUNTIMES.items() if device in runtime.devices)


def runtime_of_folder(folder: Path) -> str:
    """The runtime whose model file ``folder`` holds. A converted graph's file is looked for before
    the framework files it may sit beside (the registry lists frameworks first)."""
    for runtime in reversed(RUNTIMES.values()):
        if (folder / runtime.model_files[0][0]).is_file():
            return runtime.name
    files = ", ".join(runtime.model_files[0][0] for runtime in reversed(RUNTIMES.values()))
    raise ArtifactError(f"{folder} holds no model file ({files}); is it a variant folder?")


__all__ = [
    "DEVICES",
    "available_devices",
    "RUNTIMES",
    "check_device",
    "Predict",
    "Runtime",
    "WeightCounts",
    "get_runtime",
    "runtime_of_folder",
    "runtimes_on",
]

"""What a technique is, what it gets, and what it returns.

A technique turns a baseline model (a PyTorch ``nn.Module`` or a Keras model) into an optimized
variant. It never silently skips: when it cannot apply (no kernel for an op, a task it does not
fit, a runtime missing), it raises ``NotApplicable`` with the reason, which the variant record
keeps. Frameworks are imported inside ``apply``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from green_deploy.errors import GreenDeployError

Framework = Literal["torch", "tensorflow", "onnx"]  # the baselines of ``zoo.baselines``


class NotApplicable(GreenDeployError):
    """The technique cannot apply to this model here; the message is the reason, recorded as such."""


def first_line(error: BaseException) -> str:
    """An error's first non-empty line (framework errors run to pages), else its type's name."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


@dataclass(frozen=True)
class OptimizationContext:
    """What a technique may use besides the model.

    ``calibration_x`` comes from the validation split (never the test split): static and full
    int8 calibrate on it. ``finetune_x``/``finetune_y`` are a slice of the training split for the
    optional short fine-tune after pruning. Inputs are in the PyTorch layout (NCHW images);
    TensorFlow techniques convert with ``to_keras_layout``. ``devices``: where the model handed to
    the step can run (its runtime's devices, narrowed by the steps before it): a step that runs
    the model (a compile's first call) runs it there.
    """

    model_id: str
    family: str
    task: str
    architecture: Mapping[str, Any]
    n_outputs: int
    calibration_x: np.ndarray
    finetune_x: np.ndarray | None = None
    finetune_y: np.ndarray | None = None
    devices: tuple[str, ...] = ("cpu",)


@dataclass
class OptimizedModel:
    """A technique's result: the model object and where it can run.

    ``model`` is an ``nn.Module`` (runtime ``pytorch``), a Keras model (``keras``), or the bytes
    of a flatbuffer (``tflite``) or ONNX graph (``onnxruntime``); ``runtime`` is a name in
    ``green_deploy.runtimes.RUNTIMES``, which saves and runs it. ``devices`` lists the devices with kernels for it (e.g. dynamic
    int8 in PyTorch runs on CPU only). ``notes`` says which API was used and why.
    """

    framework: Framework
    runtime: str
    model: Any
    devices: tuple[str, ...]
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Technique(Protocol):
    name: str
    framework: Framework

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        """The optimized variant of ``model`` (a copy: the baseline is left unchanged)."""
        ...

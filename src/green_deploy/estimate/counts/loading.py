"""Counting a saved model or a zoo example: the framework picked by the model's type or the
variant's runtime. TFLite flatbuffers and ONNX graphs are not parsed: count the model they were
converted from and set its bit widths with ``records.with_bits``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.estimate.counts.keras import count_keras
from green_deploy.estimate.counts.records import ModelCount, UncoveredModelError
from green_deploy.estimate.counts.torch_trace import count_torch


def count_model(model: Any, example: Any) -> ModelCount:
    """``count_torch`` or ``count_keras`` by the model's type (``example`` in that framework's layout)."""
    if type(model).__module__.startswith(("tf_keras", "keras")) or hasattr(model, "get_layer"):
        return count_keras(model, example)
    return count_torch(model, example)


def count_artifact(folder: Path, runtime: str, example: Any) -> ModelCount:
    """Counts of a saved model: a zoo baseline folder (``torch/`` and ``model.keras``) or a
    variant folder. ``runtime``: ``pytorch`` or ``keras``; ``example`` in the PyTorch layout
    (images are moved to NHWC for Keras). TFLite and ONNX are not parsed: UncoveredModelError."""
    from green_deploy.zoo.families.base import to_keras_layout

    folder = Path(folder)
    if runtime in ("tflite", "onnxruntime"):
        raise UncoveredModelError(
            f"{folder}: {runtime} graphs are not counted; count the model it was converted from "
            "(count_artifact on the source) and set its widths with with_bits"
        )
    if runtime == "keras":
        from green_deploy.zoo.artifacts import load_keras_model

        return count_keras(load_keras_model(folder / "model.keras"), to_keras_layout(np.asarray(example)[:1]))
    if runtime != "pytorch":
        raise UncoveredModelError(
            f"{folder}: unknown runtime {runtime!r}; known: pytorch, keras, tflite, onnxruntime"
        )
    if (folder / "torch").is_dir():
        from green_deploy.zoo.artifacts import load_torch_model

        model = load_torch_model(folder / "torch")
    else:
        from green_deploy.optimize.artifacts import load_torch_variant

        model = load_torch_variant(folder)
    return count_torch(model, example)


def example_input(zoo: Mapping[str, Any], model_id: str) -> np.ndarray:
    """One test example of a zoo model, encoded as its PyTorch model takes it (batch of 1).
    ``zoo``: the ``zoo`` parameters (conf/base/parameters_zoo.yml)."""
    from green_deploy.zoo.builder import prepare_task_data
    from green_deploy.zoo.data import load_dataset
    from green_deploy.zoo.families import get_family
    from green_deploy.zoo.spec import dataset_settings, select_entry

    entry = select_entry(zoo["models"], model_id)
    settings = dataset_settings(zoo.get("datasets") or {}, entry)
    data = prepare_task_data(entry, load_dataset(entry.dataset, settings), get_family(entry.family))
    return np.asarray(data.test_x)[:1]

"""Counting a saved model or a zoo example: the model loaded by its runtime, counted by its
framework's counter. TFLite flatbuffers and ONNX graphs are not parsed: count the model they were
converted from and set its bit widths with ``records.with_bits``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.estimate.counts.keras import count_keras
from green_deploy.estimate.counts.records import ModelCount, UncoveredModelError
from green_deploy.estimate.counts.torch_trace import count_torch
from green_deploy.runtimes import get_runtime


def _count_keras_on_torch_layout(model: Any, example: Any) -> ModelCount:
    from green_deploy.zoo.families.base import to_keras_layout

    return count_keras(model, to_keras_layout(np.asarray(example)[:1]))


# The counter of each framework's models, taking the example in the PyTorch layout
COUNTERS: dict[str, Callable[[Any, Any], ModelCount]] = {
    "torch": count_torch,
    "tensorflow": _count_keras_on_torch_layout,
}


def count_artifact(folder: Path, runtime: str, example: Any) -> ModelCount:
    """Counts of a saved model: a variant folder, or a baseline's folder in the zoo
    (``optimize.artifacts.model_folder``), loaded by its runtime. ``example`` is in the PyTorch
    layout (images are moved to NHWC for Keras). A converted graph (TFLite, ONNX) is not parsed:
    UncoveredModelError."""
    from green_deploy.optimize.structure import replay_structure

    source = get_runtime(runtime)
    if source.converted_from is not None:
        raise UncoveredModelError(
            f"{folder}: {runtime} graphs are not counted; count the {source.converted_from} model it was "
            "converted from (count_artifact on the source) and set its widths with with_bits"
        )
    return COUNTERS[source.framework](source.load(Path(folder), replay_structure), example)


def example_input(zoo: Mapping[str, Any], model_id: str) -> np.ndarray:
    """One test example of a zoo model, encoded as its PyTorch model takes it (batch of 1).
    ``zoo``: the ``zoo`` parameters (conf/base/parameters_zoo.yml)."""
    from green_deploy.zoo.builder import encoded_splits
    from green_deploy.zoo.spec import dataset_settings, select_entry

    entry = select_entry(zoo["models"], model_id)
    data = encoded_splits(entry, dataset_settings(zoo.get("datasets") or {}, entry))
    return np.asarray(data.test_x)[:1]

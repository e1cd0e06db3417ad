"""Keras models as ``.keras`` archives, served through one traced ``tf.function`` graph.

Saving and loading are the zoo's own (``zoo.artifacts``), which writes its Keras baselines the
same way; a variant's damaged file names the optimize command that rebuilds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.runtimes.base import (
    Predict,
    ReplayStructure,
    Runtime,
    WeightCounts,
    count_arrays,
    keep_structure,
    rebuild_command,
)
from green_deploy.zoo.artifacts import KERAS_FILE
from green_deploy.zoo.inference import KERAS_MODES

_SERVING_PATHS = {"graph": "tf.function graph", "xla": "tf.function graph, XLA", "eager": "Keras eager"}


class KerasRuntime(Runtime):
    name = "keras"
    framework = "tensorflow"
    model_files = ((KERAS_FILE,),)
    preload_modules = ("tensorflow", "tf_keras", "green_deploy.zoo.families.keras_layers")
    image_packages = ("tensorflow", "tf_keras")
    rebuilds_structure = True

    def save(self, model: Any, folder: Path, config: Mapping[str, Any]) -> list[str]:
        from green_deploy.zoo.artifacts import save_keras_model

        save_keras_model(model, folder / KERAS_FILE)
        return [KERAS_FILE]

    def load(self, folder: Path, replay: ReplayStructure = keep_structure) -> Any:
        from green_deploy.zoo.artifacts import load_keras_model

        return load_keras_model(folder / KERAS_FILE, rebuild_command(folder))

    def predictor(
        self, model: Any, num_threads: int | None = None, device: str = "cpu", keras_mode: str = "graph"
    ) -> Predict:
        from green_deploy.zoo.inference import KerasPredictor

        return KerasPredictor(model, keras_mode)

    def weight_counts(self, folder: Path) -> WeightCounts:
        from green_deploy.zoo.artifacts import load_keras_model

        return count_arrays([np.asarray(w) for w in load_keras_model(folder / KERAS_FILE).weights])

    def serving_path(self, keras_mode: str = "graph") -> str:
        return _SERVING_PATHS[keras_mode]


__all__ = ["KERAS_MODES", "KerasRuntime"]

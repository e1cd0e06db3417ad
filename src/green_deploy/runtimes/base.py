"""What every runtime does with a saved model: write it, read it back, run it, count its weights.

A runtime (``pytorch``, ``keras``, ``tflite``, ``onnxruntime``) is one module beside this one
holding a ``Runtime`` subclass; ``green_deploy.runtimes`` is the registry. Frameworks are imported
inside the methods, so importing a runtime costs nothing until a model is touched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from green_deploy.errors import ArtifactError

Predict = Callable[[np.ndarray], np.ndarray]
# Rebuilds the structural change one optimization step made to a PyTorch module (a dtype cast,
# int8 Linear modules, removed channels) from the step's record in ``variant_config.json``; the
# techniques that made the change own it (``optimize.structure.replay_structure``).
ReplayStructure = Callable[[Any, Mapping[str, Any]], Any]


def keep_structure(model: Any, step: Mapping[str, Any]) -> Any:
    """The replay for a variant whose steps change values only."""
    return model


@dataclass(frozen=True)
class WeightCounts:
    """Parameters of a saved model, counted on its files. ``matrix_*`` count tensors of two or more
    dimensions (weight matrices, kernels, embedding tables), where effective sparsity is measured."""

    n_parameters: int
    n_nonzero_parameters: int
    n_matrix_parameters: int
    n_matrix_zeros: int


def count_arrays(arrays: list[np.ndarray]) -> WeightCounts:
    """The counts of plain weight arrays (a zero is an exact 0)."""
    nonzero = sum(int(np.count_nonzero(a)) for a in arrays)
    matrices = [a for a in arrays if a.ndim >= 2]
    matrix_total = sum(a.size for a in matrices)
    return WeightCounts(
        n_parameters=sum(a.size for a in arrays),
        n_nonzero_parameters=nonzero,
        n_matrix_parameters=matrix_total,
        n_matrix_zeros=matrix_total - sum(int(np.count_nonzero(a)) for a in matrices),
    )


def rebuild_command(folder: Path) -> str:
    """The command that rebuilds the variant saved in ``<variants_dir>/<model_id>/<variant_id>``."""
    return (
        f"rebuild it with `kedro run --pipeline=optimize --namespaces={folder.parent.name} "
        f'--params "optimize.only={folder.name}"`'
    )


def read_checked_bytes(path: Path, runtime: str, parse: Callable[[bytes], Any]) -> bytes:
    """The bytes of a serialized model (an ONNX graph, a TFLite flatbuffer), parsed once as its
    runtime will, so a truncated or corrupt file is named here rather than failing inside the
    runtime later."""
    rebuild = rebuild_command(path.parent)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; {rebuild}")
    data = path.read_bytes()
    try:
        parse(data)
    except Exception as error:  # protobuf's DecodeError, LiteRT's ValueError: the file is damaged
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(
            f"{path} is not a readable {runtime} model ({reason[:200]}); {rebuild}"
        ) from error
    return data


class Runtime(ABC):
    """One way of storing and running a model.

    Attributes:
        name: the runtime's name in configuration and records.
        framework: the framework whose baseline a variant of this runtime starts from
            (``torch`` or ``tensorflow``).
        model_files: the files a saved model of this runtime consists of; alternatives in order
            (a PyTorch variant folder, or a zoo model's ``torch/`` folder).
        converted_from: the runtime whose model this one's graph is converted from (``None``: the
            model is its framework's own); estimates count a converted graph on its source.
        devices: where a model of this runtime can be placed here.
        preload_modules: what a serving zygote imports once before forking servers of it.
        image_packages: the pip packages a cloud image needs to serve it (besides the serving core).
        rebuilds_structure: its files hold weights only, so the family's packages (which build the
            model's structure) go into the image too.
    """

    name: ClassVar[str]
    framework: ClassVar[str]
    model_files: ClassVar[tuple[tuple[str, ...], ...]]
    converted_from: ClassVar[str | None] = None
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    preload_modules: ClassVar[tuple[str, ...]]
    image_packages: ClassVar[tuple[str, ...]]
    rebuilds_structure: ClassVar[bool] = False

    @abstractmethod
    def save(self, model: Any, folder: Path, config: Mapping[str, Any]) -> list[str]:
        """Write ``model`` into ``folder`` (which exists); the file names written. ``config`` is what rebuilds the
        structure (family, architecture, steps), for the runtimes whose files do not carry it."""

    @abstractmethod
    def load(self, folder: Path, replay: ReplayStructure = keep_structure) -> Any:
        """The model object saved in ``folder``; a missing or damaged file is an ``ArtifactError``
        naming the file and the command that rebuilds it."""

    @abstractmethod
    def predictor(
        self, model: Any, num_threads: int | None = None, device: str = "cpu", keras_mode: str = "graph"
    ) -> Predict:
        """The batch predict function of a loaded model (PyTorch-layout inputs, numpy outputs).

        Not thread-safe: a TFLite interpreter is kept between calls (building one per call would
        be metered as inference), so call it from one thread.

        Args:
            model: what ``load`` returned (or a technique produced): the ``nn.Module``, Keras
                model, flatbuffer bytes or ONNX bytes.
            num_threads: intra-op threads for ONNX Runtime and TFLite; ``None`` lets them decide.
                (PyTorch's is process-wide: ``use_threads``; TensorFlow's is fixed when it starts.)
            device: one of ``devices`` (``green_deploy.runtimes.check_device``); a PyTorch model
                is moved there once, here.
            keras_mode: how a Keras model is called (``zoo.inference.KERAS_MODES``): a traced
                ``tf.function`` graph (default; checked against eager outputs on its first
                call), the graph compiled by XLA, or eagerly.
        """

    @abstractmethod
    def weight_counts(self, folder: Path) -> WeightCounts:
        """The parameters stored in the saved files (a quantized weight counts by its stored values)."""

    @abstractmethod
    def serving_path(self, keras_mode: str = "graph") -> str:
        """How a model of this runtime is called when served: stated beside every measurement,
        since the framework comparison (RQ1.2) depends on it."""

    def use_threads(self, num_threads: int | None) -> None:  # noqa: B027  (most runtimes need nothing)
        """Set the process-wide intra-op threads before a model loads (for runtimes whose thread
        count is process-wide rather than per model; the others take it in ``predictor``)."""


class SerializedGraphRuntime(Runtime):
    """A runtime whose model is one file of bytes converted from a framework's model (an ONNX
    graph, a TFLite flatbuffer): saved and loaded as the bytes, parsed once on load so a damaged
    file is named there (``read_checked_bytes``)."""

    model_file: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.model_files = ((cls.model_file,),)  # the one file, named once

    @staticmethod
    @abstractmethod
    def parse(data: bytes) -> Any:
        """Read the bytes as the runtime will; raises on a damaged file."""

    def save(self, model: Any, folder: Path, config: Mapping[str, Any]) -> list[str]:
        (folder / self.model_file).write_bytes(model)
        return [self.model_file]

    def load(self, folder: Path, replay: ReplayStructure = keep_structure) -> bytes:
        return read_checked_bytes(folder / self.model_file, self.name, self.parse)

"""What is served: a predict function, the input it accepts, and its name and runtime.

The serving core knows nothing of families or techniques. A ``ServedModel`` is any callable from
a numpy batch (PyTorch layout, as the zoo encodes it) to a numpy batch, plus the ``InputSpec``
every request is validated against. ``load_served_model`` builds one from a variant folder
written by the optimize pipeline through its runtime (``green_deploy.runtimes``); frameworks are
imported there, only for the runtime served.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.errors import ConfigError
from green_deploy.optimize.structure import replay_structure
from green_deploy.runtimes import Predict, available_devices, check_device, get_runtime

logger = logging.getLogger(__name__)

_ALLOWED_KINDS = {"f": "floating point", "i": "signed integer", "u": "unsigned integer"}


@dataclass(frozen=True)
class InputSpec:
    """The array one request carries: ``dtype`` and the shape of one item (without the batch axis).

    Images are ``float32`` ``(1, 28, 28)`` in [0, 1] and text is ``int64`` ``(L,)`` ids in the
    zoo's PyTorch layout. The spec comes from whoever starts the server (a sample of the encoded
    validation data, or the CLI's ``--input-shape``/``--input-dtype``): a PyTorch module does not
    declare its input, and serving must not guess it from the family.
    """

    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        dtype = np.dtype(self.dtype)  # raises TypeError for an unknown name
        if dtype.kind not in _ALLOWED_KINDS:
            raise ConfigError(f"input dtype must be a number type, got {self.dtype!r}")
        if any(not isinstance(d, int) or d < 1 for d in self.shape):
            raise ConfigError(f"input shape must be positive integers (no batch axis), got {self.shape}")
        object.__setattr__(self, "dtype", dtype.name)
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def item_bytes(self) -> int:
        """Bytes of one item in its binary form."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.numpy_dtype.itemsize

    @classmethod
    def from_example(cls, batch: np.ndarray) -> InputSpec:
        """The spec of ``batch``, an encoded batch of at least one item (e.g. validation data)."""
        batch = np.asarray(batch)
        if batch.ndim < 1 or len(batch) < 1:
            raise ConfigError(f"an example batch needs a batch axis and one item at least; got {batch.shape}")
        return cls(batch.dtype.name, tuple(int(d) for d in batch.shape[1:]))

    @classmethod
    def parse(cls, dtype: str, shape: str) -> InputSpec:
        """From command-line text: ``parse("float32", "1,28,28")``."""
        try:
            dims = tuple(int(part) for part in shape.split(",") if part.strip())
        except ValueError as error:
            raise ConfigError(f"input shape {shape!r} is not comma-separated integers") from error
        return cls(dtype, dims)

    def zeros(self, n_items: int = 1) -> np.ndarray:
        return np.zeros((n_items, *self.shape), dtype=self.numpy_dtype)

    def describe(self) -> str:
        return f"{self.dtype} (N, {', '.join(map(str, self.shape))})"

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ServedModel:
    """A model ready to serve. ``predict`` is called from one thread only (the serving worker)."""

    name: str
    runtime: str
    predict: Predict
    input_spec: InputSpec


def serving_path(runtime: str, keras_mode: str = "graph") -> str:
    """How a runtime's variants are called when served: stated beside every measurement, since
    the framework comparison (RQ1.2) depends on it."""
    return get_runtime(runtime).serving_path(keras_mode)


def predictor(
    runtime: str,
    model: Any,
    num_threads: int | None = None,
    device: str = "cpu",
    keras_mode: str = "graph",
) -> Predict:
    """The batch predict function of a loaded variant (see ``load_model_files``); ``Runtime.predictor``
    of ``runtime`` after the device is checked."""
    check_device(runtime, device)
    return get_runtime(runtime).predictor(model, num_threads, device, keras_mode)


def check_devices_here(devices: Sequence[str], where: str) -> None:
    """Refuse, before anything starts, a device this machine does not have (a server placed
    there would die while loading, its reason only in its log)."""
    if all(device == "cpu" for device in devices):
        return  # every machine has one; asking PyTorch would import it for nothing
    here = available_devices()
    missing = [device for device in devices if device not in here]
    if missing:
        raise ConfigError(
            f"{where} names {missing}, which this machine does not have (PyTorch finds no CUDA GPU and "
            f"driver here: torch.cuda.is_available() is False); run it on a machine with a GPU, or set {where} "
            "to cpu"
        )


def load_model_files(folder: Path, runtime: str) -> Any:
    """The model object in ``folder`` for ``runtime`` (module, Keras model, flatbuffer or ONNX bytes).

    ``folder`` is a variant folder the optimize pipeline wrote, or a zoo model's build folder:
    the baselines are the zoo models as built (``torch_baseline``: ``<zoo>/<model>/torch/`` with
    ``model_config.json``; ``tensorflow_baseline``: ``<zoo>/<model>/`` with ``model.keras``). A
    PyTorch variant's structure is rebuilt by the techniques that made it (``optimize.structure``).
    """
    return get_runtime(runtime).load(Path(folder), replay_structure)


def load_served_model(
    variant_dir: Path,
    runtime: str,
    input_spec: InputSpec,
    name: str | None = None,
    num_threads: int | None = None,
    device: str = "cpu",
    keras_mode: str = "graph",
) -> ServedModel:
    """Load a variant folder written by the optimize pipeline (or a zoo model's, see
    ``load_model_files``) and wrap it for serving.

    ``name`` defaults to the folder's name (the variant id).
    """
    check_device(runtime, device)
    get_runtime(runtime).use_threads(num_threads)
    model = load_model_files(Path(variant_dir), runtime)
    served = ServedModel(
        name or Path(variant_dir).name,
        runtime,
        predictor(runtime, model, num_threads, device, keras_mode),
        input_spec,
    )
    logger.info(
        "loaded %s (%s on %s, %s) from %s; input %s",
        served.name,
        runtime,
        device,
        serving_path(runtime, keras_mode),
        variant_dir,
        input_spec.describe(),
    )
    return served

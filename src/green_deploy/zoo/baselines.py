"""The baselines a zoo build holds, one per framework its family builds: the model as built, which
optimize starts from and the study measures as ``<framework>_baseline``.

A zoo family builds a PyTorch model and its TensorFlow (Keras) twin; a user's own model is built
in its own framework only: a Hugging Face folder or an exported program in PyTorch, a Keras file
in TensorFlow, an ONNX file as the ONNX graph it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from green_deploy.zoo.artifacts import KERAS_FILE, ONNX_FILE, TORCH_CONFIG, TORCH_DIR, TORCH_WEIGHTS


@dataclass(frozen=True)
class Baseline:
    """Where a framework's baseline lives in a zoo model's folder and what runs it.

    Attributes:
        framework: ``torch``, ``tensorflow`` or ``onnx``: the variants that start from it.
        runtime: the runtime (``green_deploy.runtimes``) that saves, loads and serves it.
        subfolder: the folder within the zoo model's folder its runtime loads ("" = that folder).
        files: its files, relative to the zoo model's folder (hashed on the card).
        label: how reports name the framework.
    """

    framework: str
    runtime: str
    subfolder: str
    files: tuple[str, ...]
    label: str

    @property
    def variant_id(self) -> str:
        return f"{self.framework}_baseline"


BASELINES: dict[str, Baseline] = {
    baseline.framework: baseline
    for baseline in (
        Baseline(
            "torch",
            "pytorch",
            TORCH_DIR,
            (f"{TORCH_DIR}/{TORCH_WEIGHTS}", f"{TORCH_DIR}/{TORCH_CONFIG}"),
            "PyTorch",
        ),
        Baseline("tensorflow", "keras", "", (KERAS_FILE,), "TensorFlow"),
        Baseline("onnx", "onnxruntime", "", (ONNX_FILE,), "ONNX"),
    )
}
BASELINE_VARIANT_IDS = tuple(baseline.variant_id for baseline in BASELINES.values())
FRAMEWORKS = tuple(BASELINES)


def baseline_of_variant(variant_id: str) -> Baseline | None:
    """The baseline a variant id names (``torch_baseline``...), else ``None``."""
    return next((b for b in BASELINES.values() if b.variant_id == variant_id), None)

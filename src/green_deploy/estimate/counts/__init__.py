"""Per-layer operation counts of a model on one example, in PyTorch and in Keras.

``records`` (what a count is, and the cost rules both frameworks share), ``torch_layers`` (the
rules for PyTorch modules), ``torch_trace`` (hooks and torch modes over one forward pass,
cross-checked with ``FlopCounterMode``), ``keras`` (each layer's ``call`` wrapped for one eager
pass, Keras kinds mapped to PyTorch's) and ``loading`` (saved variants and zoo examples).

Counts are per example (batch 1). TFLite flatbuffers and ONNX graphs are not parsed: count the
model they were converted from (``count_artifact`` says so) and set its bit widths with
``with_bits``.
"""

from green_deploy.estimate.counts.keras import count_keras
from green_deploy.estimate.counts.loading import count_artifact, example_input
from green_deploy.estimate.counts.records import LayerCount, ModelCount, UncoveredModelError, with_bits
from green_deploy.estimate.counts.torch_trace import GLUE_KINDS, count_torch

__all__ = [
    "GLUE_KINDS",
    "LayerCount",
    "ModelCount",
    "UncoveredModelError",
    "count_artifact",
    "count_keras",
    "count_torch",
    "example_input",
    "with_bits",
]

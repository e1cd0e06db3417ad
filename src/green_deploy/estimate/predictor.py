"""The learned layer-wise predictor (after Getzner et al. 2023): one regression per layer group
and compute width, trained on layer micro-benchmarks measured on the device, summed over a
model's layers, then corrected for what the sum misses.

Per call of a layer at batch ``b`` the energy is modelled as ``c0 + c1 * MACs*b + c2 * elems*b +
c3 * params`` (non-negative least squares): ``c0`` is the launch and synchronisation cost that
dominates small layers at batch 1, ``c1`` the arithmetic, ``c2`` the activation traffic, ``c3``
reading the weights once per call. Elementwise layers cost that per kernel they launch (an
activation written as eight ops is eight kernels); the glue kernels between layers (residual
additions, concatenations) are elementwise layers of their own. A model's prediction per example is the sum over its layers
divided by ``b``. Layer kinds the benchmarks never measured are reported as uncovered, never
costed as zero; kinds that launch no kernel in inference (Dropout, Identity, Flatten) cost zero.

The correction (``Correction``) scales the layer sum and adds a per-call constant, fitted on the
whole-model measurements of the training architectures: what the sum misses is the Python a
model runs between kernels and the one wait per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from green_deploy.estimate.counts import GLUE_KINDS, LayerCount, ModelCount

# Layer kinds grouped by how they spend energy; a group shares one regression.
GROUPS = {
    "Linear": "matmul",
    "MatMul": "matmul",
    "Conv1d": "conv",
    "Conv2d": "conv",
    "MultiheadAttention": "attention",
    "ScaledDotProductAttention": "scores",
    "Parameter": "elementwise",  # a container's own parameter added to its input (position embeddings)
    "Embedding": "embedding",
    "EmbeddingBag": "embedding",
    "LSTM": "recurrent",
    "GRU": "recurrent",
    **{
        kind: "elementwise"
        for kind in ("ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "Hardswish", "ReLU6")
    },
    # kernels a container launches between layers (the glue ``counts.torch_trace`` records), and Keras' layers for them
    **{kind: "elementwise" for kind in (*GLUE_KINDS, "Add", "Concatenate")},
    **{kind: "normalization" for kind in ("LayerNorm", "BatchNorm1d", "BatchNorm2d", "GroupNorm")},
    **{
        kind: "pooling"
        for kind in ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveAvgPool1d", "MaxPool1d")
    },
}
FREE = frozenset({"Dropout", "Identity", "Flatten", "Cast"})


@dataclass(frozen=True)
class LayerSample:
    """One micro-benchmark window: a layer's counts (per example), width, batch and energy."""

    layer: LayerCount
    compute_bits: int
    batch: int
    energy_per_example_j: float


def _features(layer: LayerCount, batch: int) -> np.ndarray:
    features = np.array(
        [1.0, layer.macs * batch, (layer.input_elems + layer.output_elems) * batch, float(layer.params)]
    )
    if GROUPS.get(layer.kind) == "elementwise":  # an activation written as several ops runs each
        features *= max(int(layer.hyper.get("kernels", 1)), 1)
    return features


@dataclass
class ModelPrediction:
    energy_per_example_j: float  # the layer sum (before any correction)
    layers: int
    uncovered: list[str] = field(default_factory=list)  # "name (kind)" of layers not costed

    @property
    def covered(self) -> bool:
        return not self.uncovered


class LayerPredictor:
    """Regressions per (group, compute width), fitted on ``LayerSample``s."""

    def __init__(self, coefficients: dict[tuple[str, int], np.ndarray]) -> None:
        self.coefficients = coefficients

    @classmethod
    def fit(cls, samples: Iterable[LayerSample]) -> LayerPredictor:
        from scipy.optimize import nnls

        grouped: dict[tuple[str, int], list[LayerSample]] = {}
        for sample in samples:
            group = GROUPS.get(sample.layer.kind)
            if group is not None:
                grouped.setdefault((group, _width(sample.compute_bits)), []).append(sample)
        coefficients = {}
        for key, members in grouped.items():
            x = np.array([_features(s.layer, s.batch) for s in members])
            y = np.array([s.energy_per_example_j * s.batch for s in members])  # per call
            scale = np.maximum(x.max(axis=0), 1e-12)  # NNLS on comparable columns
            # relative errors matter: weight each call by its own size
            weights = 1.0 / np.maximum(y, 1e-12)
            solution, _ = nnls(x / scale * weights[:, None], y * weights)
            coefficients[key] = solution / scale
        return cls(coefficients)

    def layer_energy_j(self, layer: LayerCount, batch: int, compute_bits: int) -> float | None:
        """Energy of one call of ``layer`` at ``batch``; ``None`` when its kind is not covered."""
        if layer.kind in FREE:
            return 0.0
        key = (GROUPS.get(layer.kind, ""), _width(compute_bits))
        if key not in self.coefficients:
            return None
        return float(_features(layer, batch) @ self.coefficients[key])

    def predict(self, count: ModelCount, batch: int, compute_bits: int) -> ModelPrediction:
        total_j, uncovered, layers = 0.0, [], 0
        for layer in count.layers:
            energy_j = self.layer_energy_j(layer, batch, compute_bits)
            if energy_j is None:
                uncovered.append(f"{layer.name} ({layer.kind})")
                continue
            total_j += energy_j
            layers += layer.kind not in FREE
        return ModelPrediction(total_j / batch, layers, uncovered)


@dataclass(frozen=True)
class Correction:
    """``measured ≈ scale * layer_sum + per_call_j / batch`` per example (non-negative), fitted on
    relative errors so that small and large models count alike."""

    scale: float
    per_call_j: float

    @classmethod
    def fit(
        cls, layer_sums_j: Sequence[float], batches: Sequence[int], measured_j: Sequence[float]
    ) -> Correction:
        from scipy.optimize import nnls

        y = np.asarray(measured_j, dtype=float)
        x = np.column_stack([np.asarray(layer_sums_j, dtype=float), 1.0 / np.asarray(batches, dtype=float)])
        weights = 1.0 / np.maximum(y, 1e-12)
        (scale, per_call_j), _ = nnls(x * weights[:, None], y * weights)
        return cls(float(scale), float(per_call_j))

    def apply(self, layer_sum_j: float, batch: int) -> float:
        return self.scale * layer_sum_j + self.per_call_j / batch


def _width(bits: int) -> int:
    """Compute widths the benchmarks measure: 32 (fp32) and 16 (fp16/bf16); int8 is its own."""
    return 32 if bits >= 32 else (16 if bits >= 16 else 8)

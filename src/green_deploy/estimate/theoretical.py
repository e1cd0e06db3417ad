"""Energy predicted before running, from operation counts: the mul/add/read/write decomposition.

Following the decomposition of Wiedemann et al. (2020), a layer's energy is

    E = n_mul * e_mul(bits) + n_add * e_add(bits) + n_read * e_read(bits, size) + n_write * e_write(bits, size)

with n_mul = MACs (+ the layer's other multiplies: normalisation, pooling, activations),
n_add = MACs (the accumulations, + other adds), reads = weights + input activations (in words)
and writes = output activations. The memory level (and so e_read = e_write) is chosen by the
layer's footprint: its weights plus its input and output activations, in bytes. Costs come from
``horowitz.OperationCosts``. A layer the counter could not count, or whose bit widths the table
lacks, is reported in ``ModelEstimate.uncovered``, never costed as zero.

A few measured runs calibrate the model: one non-negative multiplier per term, fitted by
non-negative least squares on the per-term predictions (``fit_scales``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from green_deploy.errors import GreenDeployError
from green_deploy.estimate.counts import LayerCount
from green_deploy.estimate.horowitz import PJ_TO_J, MissingCostError, OperationCosts

logger = logging.getLogger(__name__)

TERMS: tuple[str, ...] = ("mul", "add", "read", "write")


@dataclass(frozen=True)
class LayerEstimate:
    """One layer's predicted energy per example, in joules, by term (``mul``, ``add``, ``read``,
    ``write``), with the operation counts behind it."""

    name: str
    kind: str
    energy_j: Mapping[str, float]
    n_mul: float
    n_add: float
    n_read: float
    n_write: float
    footprint_bytes: float
    memory_level: int

    @property
    def total_j(self) -> float:
        return float(sum(self.energy_j.values()))


@dataclass(frozen=True)
class UncoveredLayer:
    name: str
    kind: str
    reason: str


@dataclass(frozen=True)
class ModelEstimate:
    """A model's predicted energy per example (joules): the sum over the layers that could be
    costed; ``uncovered`` lists the others with the reason, so a partial sum is visible as such."""

    layers: tuple[LayerEstimate, ...]
    uncovered: tuple[UncoveredLayer, ...] = ()

    @property
    def energy_j(self) -> float:
        return float(sum(layer.total_j for layer in self.layers))

    @property
    def energy_by_term_j(self) -> dict[str, float]:
        return {term: float(sum(layer.energy_j[term] for layer in self.layers)) for term in TERMS}

    @property
    def energy_by_layer_j(self) -> dict[str, float]:
        return {layer.name: layer.total_j for layer in self.layers}

    @property
    def complete(self) -> bool:
        return not self.uncovered


class UncoveredLayerError(GreenDeployError):
    """``estimate_layer`` was given a layer it cannot cost (not counted, or a bit width the table lacks)."""


def estimate_layer(layer: LayerCount, costs: OperationCosts, sparse: bool = False) -> LayerEstimate:
    """Energy of one layer per example. ``sparse``: multiply-accumulates are the effective ones
    (zero weights skipped, as a sparse kernel could); otherwise the dense work is costed.
    Raises ``UncoveredLayerError`` for a layer that cannot be costed."""
    if not layer.covered:
        raise UncoveredLayerError(f"layer {layer.name!r} ({layer.kind}) was not counted: {layer.note}")
    macs = layer.effective_macs if sparse else layer.macs
    n_mul = macs + layer.extra_muls
    n_add = macs + layer.extra_adds
    weight_bytes = layer.params * layer.weight_bits / 8
    activation_bytes = (layer.input_elems + layer.output_elems) * layer.activation_bits / 8
    footprint = weight_bytes + activation_bytes
    try:
        level = costs.memory_level(footprint)
        energy_pj = {
            "mul": n_mul * costs.mul_pj(layer.compute_bits) if n_mul else 0.0,
            "add": n_add * costs.add_pj(layer.compute_bits) if n_add else 0.0,
            "read": (
                (
                    layer.weight_reads * costs.memory_pj(layer.weight_bits, footprint)
                    if layer.weight_reads
                    else 0.0
                )
                + (
                    layer.input_elems * costs.memory_pj(layer.activation_bits, footprint)
                    if layer.input_elems
                    else 0.0
                )
            ),
            "write": layer.output_elems * costs.memory_pj(layer.activation_bits, footprint)
            if layer.output_elems
            else 0.0,
        }
    except MissingCostError as error:
        raise UncoveredLayerError(f"layer {layer.name!r} ({layer.kind}): {error}") from error
    return LayerEstimate(
        name=layer.name,
        kind=layer.kind,
        energy_j={term: value * PJ_TO_J for term, value in energy_pj.items()},
        n_mul=float(n_mul),
        n_add=float(n_add),
        n_read=float(layer.weight_reads + layer.input_elems),
        n_write=float(layer.output_elems),
        footprint_bytes=footprint,
        memory_level=level,
    )


def estimate_model(
    layers: Sequence[LayerCount], costs: OperationCosts, sparse: bool = False
) -> ModelEstimate:
    """Every layer costed with ``estimate_layer``; those that cannot be are listed as uncovered."""
    estimates, uncovered = [], []
    for layer in layers:
        try:
            estimates.append(estimate_layer(layer, costs, sparse))
        except UncoveredLayerError as error:
            uncovered.append(UncoveredLayer(layer.name, layer.kind, str(error)))
    if uncovered:
        logger.warning("%d layer(s) not costed: %s", len(uncovered), ", ".join(u.name for u in uncovered[:5]))
    return ModelEstimate(tuple(estimates), tuple(uncovered))


# --- calibration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scales:
    """One non-negative multiplier per term, fitted to measured energies. ``residual_j`` is the
    norm of the fit's residual (relative units when fitted with ``relative=True``)."""

    mul: float = 1.0
    add: float = 1.0
    read: float = 1.0
    write: float = 1.0
    residual: float = 0.0
    unconstrained: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, float]:
        return {term: getattr(self, term) for term in TERMS}


def term_matrix(estimates: Sequence[ModelEstimate]) -> list[list[float]]:
    """Rows of per-term predicted energies (J), one per estimate, columns in ``TERMS`` order."""
    return [[estimate.energy_by_term_j[term] for term in TERMS] for estimate in estimates]


def fit_scales(
    estimates: Sequence[ModelEstimate], measured_j: Sequence[float], relative: bool = True
) -> Scales:
    """Non-negative multipliers (mul, add, read, write) so that sum(scale * term) ≈ measured.

    ``relative``: each run's row is divided by its measured energy, so the fit minimises relative
    errors (the study spans orders of magnitude; an absolute fit would be the largest model's).
    A term that is zero in every run cannot be fitted: its scale is 0 and it is named in
    ``unconstrained``. With fewer runs than terms the solution is one of many; prefer more runs.
    """
    import numpy as np
    from scipy.optimize import nnls

    if len(estimates) != len(measured_j):
        raise ValueError(f"{len(estimates)} estimates but {len(measured_j)} measurements")
    if not estimates:
        raise ValueError("fit_scales needs at least one measured run")
    matrix = np.asarray(term_matrix(estimates), dtype=float)
    target = np.asarray(measured_j, dtype=float)
    if np.any(~np.isfinite(target)) or np.any(target <= 0):
        raise ValueError("measured energies must be positive and finite")
    if relative:
        matrix, target = matrix / target[:, None], np.ones_like(target)
    # Column scaling keeps NNLS well conditioned when terms differ by orders of magnitude.
    norms = np.linalg.norm(matrix, axis=0)
    safe = np.where(norms > 0, norms, 1.0)
    solution, residual = nnls(matrix / safe, target)
    solution = solution / safe
    unconstrained = tuple(term for term, norm in zip(TERMS, norms, strict=True) if norm == 0)
    if unconstrained:
        logger.warning("terms %s are zero in every run; their scales cannot be fitted", unconstrained)
    if len(estimates) < len(TERMS):
        logger.warning("%d runs for %d scales: the fit is underdetermined", len(estimates), len(TERMS))
    mul, add, read, write = (float(value) for value in solution)  # in TERMS order
    return Scales(mul, add, read, write, residual=float(residual), unconstrained=unconstrained)


def apply_scales(estimate: ModelEstimate, scales: Scales) -> ModelEstimate:
    """The estimate with each term multiplied by its fitted scale (layer by layer)."""
    factors = scales.as_dict()
    layers = tuple(
        replace(layer, energy_j={term: value * factors[term] for term, value in layer.energy_j.items()})
        for layer in estimate.layers
    )
    return ModelEstimate(layers, estimate.uncovered)


@dataclass(frozen=True)
class FitErrors:
    """Agreement of predictions with measurements: mean absolute percentage error (percent) and
    the coefficient of determination R² (nan when undefined: fewer than two runs or no spread)."""

    mape_percent: float
    r2: float
    n: int


def errors(predicted: Sequence[float], measured: Sequence[float]) -> FitErrors:
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predictions but {len(measured)} measurements")
    if not measured:
        return FitErrors(math.nan, math.nan, 0)
    if any(m == 0 for m in measured):
        raise ValueError("MAPE is undefined for a measured value of 0")
    mape = 100.0 * sum(abs(p - m) / abs(m) for p, m in zip(predicted, measured, strict=True)) / len(measured)
    mean = sum(measured) / len(measured)
    total = sum((m - mean) ** 2 for m in measured)
    residual = sum((m - p) ** 2 for p, m in zip(predicted, measured, strict=True))
    r2 = 1.0 - residual / total if len(measured) >= 2 and total > 0 else math.nan
    return FitErrors(mape, r2, len(measured))

"""Energy predicted before running: operation counts of a model (``counts``), the Horowitz
45 nm cost table (``horowitz``) and the mul/add/read/write model calibrated on measurements
(``theoretical``). Frameworks are imported inside functions, so importing this package is cheap."""

from green_deploy.estimate.counts import LayerCount, ModelCount, count_artifact, count_keras, count_torch
from green_deploy.estimate.horowitz import HOROWITZ_45NM, OperationCosts, costs_from_config
from green_deploy.estimate.theoretical import (
    LayerEstimate,
    ModelEstimate,
    Scales,
    apply_scales,
    errors,
    estimate_layer,
    estimate_model,
    fit_scales,
)

__all__ = [
    "HOROWITZ_45NM",
    "LayerCount",
    "LayerEstimate",
    "ModelCount",
    "ModelEstimate",
    "OperationCosts",
    "Scales",
    "apply_scales",
    "costs_from_config",
    "count_artifact",
    "count_keras",
    "count_torch",
    "errors",
    "estimate_layer",
    "estimate_model",
    "fit_scales",
]

"""The layer-wise predictor: planted per-call costs are recovered from synthetic layer windows,
a model is the sum of its layers per example, unknown kinds are named, the correction is fitted."""

from __future__ import annotations

import pytest

from green_deploy.estimate.counts import LayerCount, ModelCount
from green_deploy.estimate.predictor import Correction, LayerPredictor, LayerSample

LAUNCH_J, PER_MAC_J, PER_ELEM_J = 2e-3, 1e-11, 1e-9


def _linear(macs: int, elems: int) -> LayerCount:
    return LayerCount(
        name=f"fc{macs}", kind="Linear", macs=macs, input_elems=elems // 2, output_elems=elems // 2
    )


def _call_j(layer: LayerCount, batch: int) -> float:
    return (
        LAUNCH_J
        + PER_MAC_J * layer.macs * batch
        + PER_ELEM_J * (layer.input_elems + layer.output_elems) * batch
    )


def _samples() -> list[LayerSample]:
    layers = [
        _linear(m, e)
        for m, e in ((4096, 128), (10**6, 2048), (10**7, 8192), (5 * 10**7, 4096), (10**8, 65536))
    ]
    return [
        LayerSample(layer, 32, batch, _call_j(layer, batch) / batch)
        for layer in layers
        for batch in (1, 8, 32)
    ]


def test_planted_layer_costs_are_recovered_and_summed_per_example():
    predictor = LayerPredictor.fit(_samples())
    layer = _linear(3 * 10**7, 1000)
    assert predictor.layer_energy_j(layer, 4, 32) == pytest.approx(_call_j(layer, 4), rel=1e-3)
    model = ModelCount(
        "torch",
        (layer, _linear(10**6, 100), LayerCount(name="drop", kind="Dropout")),
    )
    prediction = predictor.predict(model, 4, 32)
    expected = (_call_j(layer, 4) + _call_j(_linear(10**6, 100), 4)) / 4
    assert prediction.energy_per_example_j == pytest.approx(expected, rel=1e-3)
    assert prediction.layers == 2 and prediction.covered  # Dropout launches nothing: free


def test_kinds_never_measured_are_named_not_costed():
    predictor = LayerPredictor.fit(_samples())
    model = ModelCount("torch", (_linear(10**6, 100), LayerCount(name="conv", kind="Conv2d", macs=10**6)))
    prediction = predictor.predict(model, 1, 32)
    assert prediction.uncovered == ["conv (Conv2d)"]
    assert prediction.energy_per_example_j == pytest.approx(_call_j(_linear(10**6, 100), 1), rel=1e-3)
    assert predictor.predict(model, 1, 16).energy_per_example_j == 0.0  # no fp16 windows: nothing covered


def test_the_correction_recovers_a_planted_scale_and_per_call_cost():
    sums = [0.1, 0.5, 1.0, 0.02, 0.3]
    batches = [1, 32, 1, 32, 8]
    measured = [1.2 * s + 0.05 / b for s, b in zip(sums, batches, strict=True)]
    correction = Correction.fit(sums, batches, measured)
    assert correction.scale == pytest.approx(1.2) and correction.per_call_j == pytest.approx(0.05)
    assert correction.apply(0.4, 4) == pytest.approx(1.2 * 0.4 + 0.05 / 4)


def test_elementwise_layers_cost_each_kernel_they_launch():
    def relu(elems: int) -> LayerCount:
        return LayerCount(name=f"relu{elems}", kind="ReLU", input_elems=elems, output_elems=elems)

    samples = [
        LayerSample(relu(elems), 32, batch, (LAUNCH_J + PER_ELEM_J * 2 * elems * batch) / batch)
        for elems in (10**3, 10**5, 10**6)
        for batch in (1, 32)
    ]
    predictor = LayerPredictor.fit(samples)
    one_kernel = predictor.layer_energy_j(relu(5000), 4, 32)
    assert one_kernel == pytest.approx(LAUNCH_J + PER_ELEM_J * 2 * 5000 * 4, rel=1e-3)
    composite = LayerCount(
        name="gelu", kind="GELU", input_elems=5000, output_elems=5000, hyper={"kernels": 8}
    )
    assert predictor.layer_energy_j(composite, 4, 32) == pytest.approx(8 * one_kernel)
    residual = LayerCount(name="add", kind="Pointwise", input_elems=2 * 5000, output_elems=5000)
    assert predictor.layer_energy_j(residual, 4, 32) == pytest.approx(
        LAUNCH_J + PER_ELEM_J * 3 * 5000 * 4, rel=1e-3
    )

from __future__ import annotations

import math

import pytest

from green_deploy.estimate.counts import LayerCount
from green_deploy.estimate.horowitz import HOROWITZ_45NM
from green_deploy.estimate.theoretical import (
    TERMS,
    UncoveredLayerError,
    apply_scales,
    errors,
    estimate_layer,
    estimate_model,
    fit_scales,
)


def linear(name: str = "fc", in_f: int = 4, out_f: int = 3, bits: int = 32, rows: int = 1) -> LayerCount:
    """A bias-free Linear layer counted by hand."""
    return LayerCount(
        name=name,
        kind="Linear",
        macs=rows * in_f * out_f,
        effective_macs=rows * in_f * out_f,
        params=in_f * out_f,
        nonzero_params=in_f * out_f,
        weight_bits=bits,
        activation_bits=bits,
        compute_bits=bits,
        input_elems=rows * in_f,
        output_elems=rows * out_f,
        weight_reads=in_f * out_f,
    )


def test_linear_4_to_3_fp32_by_hand():
    estimate = estimate_layer(linear(), HOROWITZ_45NM)
    # 12 mul x 3.7 pJ + 12 add x 0.9 pJ + (12 weights + 4 inputs) x 5.0 pJ + 3 outputs x 5.0 pJ
    expected_pj = {"mul": 12 * 3.7, "add": 12 * 0.9, "read": (12 + 4) * 5.0, "write": 3 * 5.0}
    for term, pj in expected_pj.items():
        assert estimate.energy_j[term] == pytest.approx(pj * 1e-12)
    assert estimate.total_j == pytest.approx((44.4 + 10.8 + 80.0 + 15.0) * 1e-12)
    assert estimate.memory_level == 0 and estimate.footprint_bytes == (12 + 4 + 3) * 4


def test_linear_counted_from_a_torch_module_costs_the_same():
    import torch

    from green_deploy.estimate.counts import count_torch

    (layer,) = count_torch(torch.nn.Linear(4, 3, bias=False), torch.ones(1, 4)).layers
    assert estimate_layer(layer, HOROWITZ_45NM).total_j == pytest.approx(
        estimate_layer(linear(), HOROWITZ_45NM).total_j
    )


@pytest.mark.parametrize(
    ("in_f", "level", "read_pj"),
    [(32, 0, 5.0), (64, 1, 10.0), (256, 2, 50.0), (1024, 3, 1000.0)],  # footprints ~4 KB, 16 KB, 256 KB, 4 MB
)
def test_memory_level_follows_the_footprint(in_f, level, read_pj):
    estimate = estimate_layer(linear(in_f=in_f, out_f=in_f), HOROWITZ_45NM)
    assert estimate.memory_level == level
    assert estimate.energy_j["write"] == pytest.approx(in_f * read_pj * 1e-12)


def test_half_precision_and_sparse_work_cost_less():
    dense = estimate_layer(linear(), HOROWITZ_45NM)
    half = estimate_layer(linear(bits=16), HOROWITZ_45NM)
    assert half.energy_j["mul"] == pytest.approx(12 * 1.1e-12)
    pruned = LayerCount(**{**linear().__dict__, "effective_macs": 6.0})
    assert estimate_layer(pruned, HOROWITZ_45NM, sparse=True).energy_j["mul"] == pytest.approx(6 * 3.7e-12)
    assert estimate_layer(pruned, HOROWITZ_45NM).energy_j["mul"] == dense.energy_j["mul"]


def test_uncovered_layers_are_reported_not_zero():
    unknown = LayerCount(name="mystery", kind="Mystery", covered=False, note="no counting rule for Mystery")
    wide = linear(name="fc64", bits=64)
    with pytest.raises(UncoveredLayerError, match="no counting rule"):
        estimate_layer(unknown, HOROWITZ_45NM)
    model = estimate_model([linear(), unknown, wide], HOROWITZ_45NM)
    assert [layer.name for layer in model.layers] == ["fc"]
    assert [u.name for u in model.uncovered] == ["mystery", "fc64"]
    assert "64-bit" in model.uncovered[1].reason
    assert not model.complete
    assert model.energy_j == pytest.approx(estimate_layer(linear(), HOROWITZ_45NM).total_j)
    assert set(model.energy_by_term_j) == set(TERMS)


def test_calibration_recovers_planted_scales():
    planted = {"mul": 2.0, "add": 0.5, "read": 3.0, "write": 1.5}
    shapes = [(4, 3, 1), (64, 64, 8), (256, 128, 4), (32, 512, 16), (1024, 1024, 1), (16, 8, 64)]
    estimates = [
        estimate_model(
            [linear(in_f=i, out_f=o, rows=r), linear("b", in_f=o, out_f=i, bits=16)], HOROWITZ_45NM
        )
        for i, o, r in shapes
    ]
    measured = [sum(planted[t] * e.energy_by_term_j[t] for t in TERMS) for e in estimates]
    for relative in (True, False):
        scales = fit_scales(estimates, measured, relative=relative)
        assert scales.as_dict() == pytest.approx(planted, rel=1e-6)
    calibrated = [apply_scales(e, scales).energy_j for e in estimates]
    assert calibrated == pytest.approx(measured, rel=1e-6)
    fit = errors(calibrated, measured)
    assert fit.mape_percent == pytest.approx(0.0, abs=1e-6) and fit.r2 == pytest.approx(1.0)


def test_calibration_scales_are_never_negative():
    estimates = [estimate_model([linear(in_f=n, out_f=n)], HOROWITZ_45NM) for n in (4, 8, 16, 32, 64)]
    measured = [e.energy_by_term_j["read"] for e in estimates]
    scales = fit_scales(estimates, measured)
    assert min(scales.as_dict().values()) >= 0
    with pytest.raises(ValueError):
        fit_scales(estimates, measured[:2])


def test_errors_mape_and_r2():
    fit = errors([110.0, 90.0, 300.0], [100.0, 100.0, 300.0])
    assert fit.mape_percent == pytest.approx(20.0 / 3)
    # SS_res = 200, mean 166.67, SS_tot = 2 * 66.67^2 + 133.33^2
    assert fit.r2 == pytest.approx(1 - 200 / (2 * (200 / 3) ** 2 + (400 / 3) ** 2))
    assert math.isnan(errors([1.0], [2.0]).r2)

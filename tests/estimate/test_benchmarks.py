"""The micro-benchmark layers: each is counted as exactly one layer the predictor has a group for,
as the same counter counts a model's (a benchmark the counter missed would train nothing)."""

from __future__ import annotations

from green_deploy.estimate.benchmarks import LAYERS, layer_samples
from green_deploy.estimate.predictor import GROUPS


def test_every_benchmark_layer_becomes_one_training_sample():
    rows = [
        {
            "layer": name,
            "kind": kind,
            "hyper": hyper,
            "dtype": "float16",
            "batch": 2,
            "energy_per_example_j": 0.1,
        }
        for name, (kind, hyper) in LAYERS.items()
    ]
    samples = layer_samples(rows)
    assert len(samples) == len(rows)
    assert {GROUPS[sample.layer.kind] for sample in samples} == set(GROUPS.values())
    assert all(sample.compute_bits == 16 for sample in samples)
    glue = {sample.layer.hyper["op"] for sample in samples if "op" in sample.layer.hyper}
    assert glue == {
        "aten::add.Tensor",
        "aten::mul.Tensor",
        "aten::cat",
        "aten::clone",
        "aten::mean.dim",
        "aten::arange",
    }

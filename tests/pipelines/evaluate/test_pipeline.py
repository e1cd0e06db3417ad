"""The evaluate pipeline end to end on the tiny study: `kedro run --pipeline=evaluate` after the
optimize pipeline, in a copy of the tiny project; a run killed with SIGKILL resumes where it
stopped; subsets from --params; nothing optimized yet names the pipeline to run first; the
tradeoff report of the tiny study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest
import yaml

from green_deploy.deploy.local import teardown_all
from green_deploy.evaluate.tracking import CELL_TAG, KIND_TAG, PARENT_TAG, STUDY_TAG
from tests.pipelines.conftest import PROJECT, kedro
from tests.pipelines.deploy.test_pipeline import copy_project

STUDY = yaml.safe_load((PROJECT / "conf/test/parameters_evaluate.yml").read_text())["evaluate"]
N_CELLS = len(STUDY["models"]) * len(STUDY["variants"]) * len(STUDY["batch_sizes"])
RESULTS = "data/07_model_output/evaluation_results.parquet"
CELLS = "data/07_model_output/evaluate/default/cells"
DEPLOY_DIR = "data/07_model_output/deploy"

pytestmark = pytest.mark.timeout(900)


def _start_kedro(root, *args):
    env = {**os.environ, "KEDRO_ENV": "test", "KEDRO_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", *args],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def optimized(project, tmp_path_factory):
    root = copy_project(project, tmp_path_factory.mktemp("evaluate_project"), with_zoo=True)
    result = kedro(root, "run", "--pipeline=optimize", "--params", "optimize.only=pt_fp16")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    try:
        yield root
    finally:
        teardown_all(root / DEPLOY_DIR)


@pytest.fixture(scope="module")
def resumed(optimized):
    """A study killed (SIGKILL to its process group) after its first two cells,
    then run again to the end."""
    root = optimized
    process = _start_kedro(root, "run", "--pipeline=evaluate")
    cells = root / CELLS
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if cells.is_dir() and len(list(cells.glob("*.json"))) >= 2:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the study ended before it could be killed"
    before = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    assert 2 <= len(before) < N_CELLS
    result = kedro(root, "run", "--pipeline=evaluate")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, before, result


def test_nothing_optimized_names_the_pipeline_to_run_first(project, tmp_path):
    root = copy_project(project, tmp_path / "fresh", with_zoo=False)
    result = kedro(root, "run", "--pipeline=evaluate")
    assert result.returncode != 0
    assert "kedro run --pipeline=optimize" in result.stdout + result.stderr


def test_the_resumed_study_has_every_cell_once_and_kept_the_finished_ones(resumed):
    root, before, result = resumed
    table = pd.read_parquet(root / RESULTS)
    assert len(table) == N_CELLS == table.config_hash.nunique()
    assert {p.name: p.read_bytes() for p in (root / CELLS).glob("*.json") if p.name in before} == before
    assert f"| 0/{N_CELLS - len(before)} [" in result.stderr  # the progress bar counts only what is left
    assert set(table.variant_id) == set(STUDY["variants"]) and set(table.batch_size) == set(
        STUDY["batch_sizes"]
    )
    assert table.energy_per_item_j.gt(0).all() and table.accuracy.between(0, 1).all()
    assert table.accuracy_applicable.all()  # trained zoo models (random-weight ones: tests/zoo/test_hub.py)
    assert table.n_repetitions.ge(2).all() and table.ci_target.eq(0.05).all()
    assert (table.ci_reached == (table.energy_ci_relative_half_width <= 0.05)).all()
    assert not table.energy_measured.any()  # no hardware meter on a CPU machine: estimates, flagged
    repetitions = pd.read_parquet(root / "data/07_model_output/evaluation_repetitions.parquet")
    assert repetitions.groupby("config_hash").size().to_dict() == dict(
        zip(table.config_hash, table.n_repetitions, strict=True)
    )
    # the baselines' accuracy on the full test split is the zoo's own figure for that framework
    summary = (root / "data/08_reporting/evaluation_summary.md").read_text()
    assert "ESTIMATED" in summary and "vit_fmnist" in summary


def test_mlflow_holds_one_study_run_with_one_nested_run_per_cell(resumed):
    root, _, _ = resumed
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("green_deploy")
    studies = client.search_runs([experiment.experiment_id], f"tags.`{KIND_TAG}` = 'study'")
    assert [r.data.tags[STUDY_TAG] for r in studies] == ["default"]
    cells = client.search_runs(
        [experiment.experiment_id], f"tags.`{PARENT_TAG}` = '{studies[0].info.run_id}'"
    )
    assert len(cells) == N_CELLS == len({r.data.tags[CELL_TAG] for r in cells})
    params = cells[0].data.params
    assert {
        "model_id",
        "variant_id",
        "framework",
        "runtime",
        "technique",
        "target",
        "device",
        "batch_size",
    } <= set(params)


def test_no_server_is_left_running(resumed):
    root, _, _ = resumed
    from green_deploy.deploy.local import LocalDeployer

    assert LocalDeployer(work_dir=root / DEPLOY_DIR).running() == []


def test_the_tradeoff_report_answers_every_question_of_the_tiny_study(resumed):
    """Two models, two frameworks' baselines and pt_fp16: the report is written whole, each
    question answered (most with "too few" on so little data), plots in the page and as files."""
    root, _, _ = resumed
    result = kedro(root, "run", "--pipeline=tradeoff")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (root / "data/08_reporting/tradeoff_report.html").read_text()
    assert page.count("<section") == 7 and "data:image/png;base64," in page
    answers = pd.read_parquet(root / "data/08_reporting/tradeoff_answers.parquet")
    assert answers.question.tolist() == [f"RQ1.{i}" for i in range(1, 8)]
    assert "ESTIMATED" in page  # CPU energy here: the report says so
    assert sorted(p.name for p in (root / "data/08_reporting/tradeoff_figures").iterdir())[0].endswith(".png")


def test_energy_is_estimated_for_every_variant_and_compared_with_the_tiny_study(resumed):
    """Every variant counted layer by layer; every cell predicted (theoretical, and the learned
    predictor from the H100's layer windows given by path) beside its (estimated) J/inference."""
    root, _, _ = resumed
    windows = [str(PROJECT / f"bench/results/estimate_layers{part}.json") for part in ("", "_sdpa", "_glue")]
    config = root / "conf/test/parameters_estimate.yml"  # KEDRO_ENV=test: conf/local is not read
    tiny = config.read_text()
    config.write_text(yaml.safe_dump({"estimate": {"layer_benchmarks": windows, "device_label": "h100"}}))
    try:
        result = kedro(root, "run", "--pipeline=estimate")
    finally:
        config.write_text(tiny)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    layers = pd.read_parquet(root / "data/07_model_output/layer_counts.parquet")
    variants = pd.read_parquet(root / "data/07_model_output/variants.parquet")
    ok = variants[variants.status == "ok"]
    assert set(zip(layers.model_id, layers.variant_id, strict=True)) == set(
        zip(ok.model_id, ok.variant_id, strict=True)
    )
    assert (layers.groupby(["model_id", "variant_id"]).macs.sum() > 0).all()
    assert {"Pointwise", "Linear"} <= set(layers.kind)  # the glue between layers is counted too
    estimates = pd.read_parquet(root / "data/08_reporting/energy_estimates.parquet")
    results = pd.read_parquet(root / RESULTS)
    assert len(estimates) == len(results.groupby(["model_id", "variant_id", "batch_size"]))
    assert (estimates.theoretical_j > 0).all() and (estimates.measured_j > 0).all()
    torch_rows = estimates[estimates.variant_id != "tensorflow_baseline"]
    assert torch_rows.learned_h100_j.notna().all() and (torch_rows.learned_h100_j > 0).all()
    summary = (root / "data/08_reporting/estimate_summary.md").read_text()
    assert "ESTIMATED" in summary and "layer by layer" in summary


def test_a_subset_from_the_command_line_measures_only_it(resumed):
    root, _, _ = resumed
    result = kedro(
        root,
        "run",
        "--pipeline=evaluate",
        "--params",
        "evaluate.study=subset,evaluate.models=lstm_langid,evaluate.variants=pt_fp16,evaluate.batch_sizes=2",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = pd.read_parquet(root / RESULTS)
    assert list(zip(table.model_id, table.variant_id, table.batch_size, strict=True)) == [
        ("lstm_langid", "pt_fp16", 2)
    ]

"""The zoo pipeline end to end: a real ``kedro run`` of the tiny zoo (conf/test) in a copy of
the project, with MLflow on its own sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from green_deploy.zoo.builder import CARD_FILE
from tests.pipelines.conftest import PROJECT, kedro

MODEL_IDS = sorted(yaml.safe_load((PROJECT / "conf/base/parameters_zoo.yml").read_text())["zoo"]["models"])


def _card(project: Path, model_id: str) -> dict:
    return json.loads((project / "data/06_models/zoo" / model_id / CARD_FILE).read_text())


def test_registry_lists_the_zoo_pipeline():
    result = kedro(PROJECT, "registry", "list")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "- zoo" in result.stdout


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_zoo_entry_exists_in_both_frameworks_with_the_same_outputs(project, model_id):
    card = _card(project, model_id)
    folder = project / "data/06_models/zoo" / model_id
    assert (folder / "torch/model.safetensors").is_file() and (folder / "model.keras").is_file()
    assert card["parity_max_abs_diff"] <= card["parity_bound"] <= 1e-3
    metric = card["metric"]
    assert card["test_metrics"]["tensorflow"][metric] == pytest.approx(
        card["test_metrics"]["torch"][metric], abs=1e-3
    )


def test_accuracy_and_summary_go_to_mlflow_and_the_catalog(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "green_deploy"]
    # the first zoo run (kedro-mlflow names runs after their pipeline; other tests add later runs)
    run = client.search_runs(
        [experiment.experiment_id], "tags.`mlflow.runName` = 'zoo'", order_by=["start_time ASC"]
    )[0]
    for model_id in MODEL_IDS:
        metric = _card(project, model_id)["metric"]
        assert f"{model_id}.torch.{metric}" in run.data.metrics
        assert f"{model_id}.tensorflow.{metric}" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"zoo", "zoo_summary.md"} <= artifacts

    summary = pd.read_parquet(project / "data/08_reporting/zoo_summary.parquet")
    assert len(summary) == 2 * len(MODEL_IDS)
    assert set(summary["framework"]) == {"torch", "tensorflow"}
    assert set(summary["domain"]) == {"cv", "nlp", "code"}


def test_rerun_reuses_builds_and_rebuilds_only_a_damaged_one(project):
    before = {model_id: _card(project, model_id)["built_at"] for model_id in MODEL_IDS}
    damaged = project / "data/06_models/zoo/vit_fmnist/torch/model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-10])

    result = kedro(project, "run", "--pipeline=zoo")
    assert result.returncode == 0, result.stderr[-3000:]
    after = {model_id: _card(project, model_id)["built_at"] for model_id in MODEL_IDS}
    assert {m for m in MODEL_IDS if after[m] != before[m]} == {"vit_fmnist"}
    assert "vit_fmnist: artifact" in result.stdout + result.stderr


def test_one_model_runs_alone_by_namespace(project):
    result = kedro(project, "run", "--pipeline=zoo", "--namespaces=ngram_langid")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "ngram_langid: reusing" in log
    assert "lstm_langid" not in log

"""`kedro run --pipeline=compare` and `green-deploy compare` on two study folders: a drifted
machine reads as equivalent and the run is tagged in MLflow with both studies; a regression
fails the run (exit 1); two unnamed studies are a clear configuration error."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from green_deploy.cli import compare as compare_command
from tests.compare.test_studies import _study
from tests.pipelines.conftest import kedro
from tests.pipelines.simulate.test_pipeline import copy_project

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("compare_project"))
    rng = np.random.default_rng(0)
    work = root / "data/07_model_output/evaluate"
    _study(work / "main", rng, 1.0)
    _study(work / "drifted", rng, 1.3)
    _study(work / "worse", rng, 1.3, changed={"b": 1.15})
    return root


def test_the_pipeline_divides_out_drift_and_links_both_studies_in_mlflow(studies):
    from mlflow import MlflowClient

    work = "data/07_model_output/evaluate"
    result = kedro(
        studies,
        "run",
        "--pipeline=compare",
        "--params",
        f"compare.baseline={work}/main,compare.candidate={work}/drifted",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (studies / "data/08_reporting/compare/compare.md").read_text()
    assert "6 matched cells: 0 regressed, 0 improved, 6 equivalent" in summary
    assert "Machine drift divided out" in summary
    client = MlflowClient(f"sqlite:///{studies / 'mlflow.db'}")
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`green_deploy.run_kind` = 'compare'",
    )
    assert run.data.tags["green_deploy.compare.baseline"] == f"folder {work}/main"
    assert run.data.tags["green_deploy.compare.candidate"] == f"folder {work}/drifted"
    assert run.data.metrics["cells_equivalent"] == 6
    assert {a.path for a in client.list_artifacts(run.info.run_id, "compare")} == {
        "compare/compare.md",
        "compare/compare.json",
    }


def test_a_regression_fails_the_run_and_unnamed_studies_are_a_config_error(studies):
    work = "data/07_model_output/evaluate"
    failed = kedro(
        studies,
        "run",
        "--pipeline=compare",
        "--params",
        f"compare.baseline={work}/main,compare.candidate={work}/worse",
    )
    assert failed.returncode == 1
    assert "RegressionFound" in failed.stderr and "regressed against" in failed.stderr
    unnamed = kedro(studies, "run", "--pipeline=compare")
    assert (
        unnamed.returncode == 1
        and "compare.baseline and compare.candidate name the two studies" in unnamed.stderr
    )


def test_the_command_exits_1_on_a_regression_and_2_on_an_error(studies, tmp_path):
    work = studies / "data/07_model_output/evaluate"
    runner = CliRunner()
    same = runner.invoke(compare_command, [str(work / "main"), str(work / "drifted"), "--out", str(tmp_path)])
    assert same.exit_code == 0, same.output
    worse = runner.invoke(compare_command, [str(work / "main"), str(work / "worse"), "--out", str(tmp_path)])
    assert worse.exit_code == 1 and "regressed" in worse.output
    energy_only = runner.invoke(
        compare_command,
        [str(work / "main"), str(work / "worse"), "--fail-on", "accuracy", "--out", str(tmp_path)],
    )
    assert energy_only.exit_code == 0
    missing = runner.invoke(
        compare_command, [str(work / "main"), str(work / "nowhere"), "--out", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "holds no study" in missing.output

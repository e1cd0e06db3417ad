"""The search pipeline end to end on the tiny zoo: `kedro run --pipeline=search` runs the tiny
study to its budget (trials built by the optimize code, measured by the evaluate harness, each a
nested MLflow run), exports its trials and its Pareto set measured on the test split; run again,
it finds the budget spent and measures nothing new."""

from __future__ import annotations

import mlflow
import optuna
import pandas as pd
import pytest
import yaml

from green_deploy.deploy.local import teardown_all
from green_deploy.evaluate.tracking import KIND_TAG, PARENT_TAG
from tests.pipelines.conftest import PROJECT, kedro
from tests.pipelines.deploy.test_pipeline import copy_project

SEARCH = yaml.safe_load((PROJECT / "conf/test/parameters_search.yml").read_text())["search"]
STUDY = f"default-{SEARCH['models'][0]}"
CELLS = f"data/07_model_output/search/default/{SEARCH['models'][0]}"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def searched(project, tmp_path_factory):
    root = copy_project(project, tmp_path_factory.mktemp("search_project"), with_zoo=True)
    try:
        result = kedro(root, "run", "--pipeline=search")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield root
    finally:
        teardown_all(root / "data/07_model_output/deploy")


def test_the_study_reaches_its_budget_and_exports_trials_and_front(searched):
    trials = pd.read_parquet(searched / "data/07_model_output/search_trials.parquet")
    complete = trials[trials.state == "COMPLETE"]
    assert len(complete) == SEARCH["n_trials"]
    assert (complete.energy_per_item_j > 0).all() and complete.accuracy.between(0, 1).all()
    assert complete.energy_sources.str.contains("cpu").all()
    assert set(complete.feasible) <= {True, False}
    assert not (trials.state == "FAIL").any()
    if (trials.state == "PRUNED").any():  # choices that cannot apply: pruned with the reason
        assert (trials[trials.state == "PRUNED"].not_applicable.str.len() > 0).all()

    study = optuna.load_study(
        study_name=STUDY, storage=f"sqlite:///{searched}/data/07_model_output/search/optuna.db"
    )
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == SEARCH["n_trials"]
    assert study.user_attrs["baseline.torch.energy_per_item_j"] > 0

    front = pd.read_parquet(searched / "data/07_model_output/search_front.parquet")
    assert "baseline" in set(front.source)
    assert front.accuracy_n_items.gt(0).all()
    on_front = front[front.source == "search"]
    assert set(on_front.trial_number) <= set(complete.number)
    # the front is measured on the test split, the trials on the validation half: different stores
    assert (searched / CELLS / "validation/cells").is_dir() and (searched / CELLS / "test/cells").is_dir()


def test_every_completed_trial_is_a_nested_mlflow_run_with_its_choices(searched):
    client = mlflow.MlflowClient(f"sqlite:///{searched}/mlflow.db")
    experiment = client.get_experiment_by_name("green_deploy")
    parents = client.search_runs([experiment.experiment_id], f"tags.`{KIND_TAG}` = 'search'")
    assert len(parents) == 1
    runs = client.search_runs([experiment.experiment_id], f"tags.`{KIND_TAG}` = 'trial'")
    assert len(runs) == SEARCH["n_trials"]
    assert {r.data.tags[PARENT_TAG] for r in runs} == {parents[0].info.run_id}
    assert all("trial.pruning" in r.data.params and "energy_per_item_j" in r.data.metrics for r in runs)


def test_run_again_the_spent_budget_measures_nothing_new(searched):
    before = sorted(p.name for p in (searched / CELLS).rglob("*.json"))
    result = kedro(searched, "run", "--pipeline=search")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = pd.read_parquet(searched / "data/07_model_output/search_trials.parquet")
    assert (trials.state == "COMPLETE").sum() == SEARCH["n_trials"]
    assert sorted(p.name for p in (searched / CELLS).rglob("*.json")) == before

"""Search settings, samplers and one worker on SQLite: exactly the budget, failures recorded,
a study whose every trial fails stops with an error instead of running forever."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from green_deploy.errors import ConfigError
from green_deploy.search.study import SearchError, SearchSettings, make_sampler, open_study, run_worker


def _settings(tmp_path, **raw):
    return SearchSettings.parse({"storage": f"sqlite:///{tmp_path}/studies/optuna.db", **raw})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"samplr": "tpe"}, "unknown key"),
        ({"sampler": "cmaes"}, "sampler"),
        ({"sampler": "grid"}, "search.grid"),
        ({"objectives": ["energy"]}, "objectives"),
        ({"max_accuracy_drop": 5}, "max_accuracy_drop"),
        ({"storage": "data/optuna.db"}, "SQLAlchemy URL"),
        ({"heartbeat_interval_s": 60, "grace_period_s": 30}, "grace_period_s"),
        ({"target": "sagemaker"}, "target"),
    ],
)
def test_bad_settings_are_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        SearchSettings.parse(raw)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
def test_the_sampler_comes_from_configuration(name, kind):
    assert isinstance(make_sampler(SearchSettings.parse({"sampler": name})), kind)


def test_a_worker_completes_exactly_the_budget_and_a_second_run_adds_nothing(tmp_path):
    settings = _settings(tmp_path, objectives=["energy", "accuracy", "latency"])
    study = open_study(settings, "m")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE", "MINIMIZE"]
    calls = []

    def objective(trial):
        calls.append(trial.number)
        if trial.number == 1:
            raise RuntimeError("could not build")
        x = trial.suggest_float("x", 0, 1)
        return [x, 1 - x, 0.0]

    outcome = run_worker(study, objective, n_trials=4, poll_s=0.01)
    assert (outcome.completed, outcome.failed, outcome.surplus) == (4, 1, 0)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1
    assert "could not build" in study.trials[1].user_attrs["error"]
    again = run_worker(open_study(settings, "m"), objective, n_trials=4, poll_s=0.01)
    assert again.completed == 0 and len(calls) == 5


def test_a_study_whose_trials_all_fail_stops_with_the_last_error(tmp_path):
    study = open_study(_settings(tmp_path), "m")

    def objective(trial):
        raise ValueError("no layer to prune")

    with pytest.raises(SearchError, match="no layer to prune"):
        run_worker(study, objective, n_trials=2, poll_s=0.01)
    assert len(study.trials) == 6


def _draws(settings, n_trials):
    """The choices of a worker that runs the real space until the study has ``n_trials``."""
    from green_deploy.search.space import suggest_variant

    study = open_study(settings, "m")

    def objective(trial):
        spec = suggest_variant(trial, settings.space)
        return [
            float(len(spec.steps)) + trial.params.get("amount", 0.0),
            1.0 - trial.params.get("amount", 0.0),
        ]

    run_worker(study, objective, n_trials=n_trials, poll_s=0.01)
    return [tuple(sorted(t.params.items())) for t in study.trials]


def test_a_resumed_worker_continues_the_sequence_instead_of_replaying_it(tmp_path):
    settings = _settings(tmp_path, seed=0, n_startup_trials=20)
    first = _draws(settings, 3)  # the worker is stopped (or killed) after 3 trials
    resumed = _draws(settings, 6)  # a new process resumes the study
    assert resumed[:3] == first
    assert len(set(resumed)) == 6, "a resumed trial repeated an earlier one"
    # the same study resumed again from the same state on this machine draws the same trials
    again = _draws(_settings(tmp_path / "again", seed=0, n_startup_trials=20), 3)
    assert again == first


def test_a_second_worker_of_a_study_on_one_machine_is_refused_naming_the_first(tmp_path):
    import os

    from green_deploy.search.runner import machine_worker

    with machine_worker(tmp_path / "default"):
        with pytest.raises(SearchError, match=rf"already runs a worker .*pid {os.getpid()}"):
            with machine_worker(tmp_path / "default"):
                pass
    with machine_worker(tmp_path / "default"):  # free again once the first has finished
        pass

"""One model's search from configuration: the study joined, trials run until it has its budget,
its Pareto set measured on the test split.

Run by as many processes as wanted (``kedro run --pipeline=search`` on each machine, one per
machine: processes on one machine would share its power and meter each other) against one
PostgreSQL storage; with the default SQLite file, on one machine.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from green_deploy.energy import EnergyMonitor, discover_sources
from green_deploy.evaluate.harness import EvaluationSet, RepetitionMeter
from green_deploy.evaluate.runner import evaluation_set, study_deployers
from green_deploy.evaluate.store import StudyStore
from green_deploy.evaluate.study import StudySettings
from green_deploy.evaluate.tracking import StudyTracker
from green_deploy.optimize.runner import ModelOptimizer, RunSettings
from green_deploy.search.space import space_for_model, suggest_variant
from green_deploy.search.study import SearchError, SearchSettings, WorkerOutcome, open_study, run_worker
from green_deploy.search.trial import (
    SearchObjective,
    VariantMeasurer,
    front_trials,
    measure_front,
    trials_table,
)
from green_deploy.zoo.spec import ZooEntry

logger = logging.getLogger(__name__)

WORKER_LOCK = ".worker.lock"

# What a trial's cells share with the study's (the protocol above all); the rest is the search's.
SHARED_WITH_STUDY = (
    "protocol",
    "accuracy_batch_size",
    "accuracy_max_items",
    "accuracy_seed",
    "country_iso",
    "price_per_kwh",
)


@dataclass
class SearchOutcome:
    trials: pd.DataFrame  # every trial of the model's study
    front: list[dict[str, Any]]  # the Pareto set measured on the test split, with its baselines
    worker: WorkerOutcome  # what this process did


def trial_study(settings: SearchSettings, evaluate: Mapping[str, Any] | None) -> StudySettings:
    """The study settings a trial is measured with: the evaluate protocol, the search's cell."""
    shared = StudySettings.parse({k: v for k, v in (evaluate or {}).items() if k in SHARED_WITH_STUDY})
    return replace(
        shared,
        study=f"search-{settings.study}",
        batch_sizes=(settings.batch_size,),
        targets=(settings.target,),
        devices=(settings.device,),
        work_dir=settings.work_dir,
    )


@contextmanager
def machine_worker(folder: Path) -> Iterator[None]:
    """This machine's one worker of a study (a lock in its work dir): a second process on the
    same machine would share the cores it measures on and draw the first one's trials, so it is
    refused with the first one's pid. Workers on other machines (a shared PostgreSQL storage)
    have work dirs of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / WORKER_LOCK).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SearchError(
                f"this machine already runs a worker of search study {folder.name!r} ({holder}); one "
                "worker per machine measures without sharing its cores: wait for it to finish (it stops at "
                "search.n_trials), or stop it, then run again. To search with more workers, give each "
                "machine its own process against a shared PostgreSQL search.storage"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()}, started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
        handle.flush()
        yield


def search_model(
    entry: ZooEntry,
    dataset_settings: Mapping[str, Any],
    zoo_folder: Path,
    settings: SearchSettings,
    evaluate: Mapping[str, Any] | None,
    deploy: Mapping[str, Any] | None,
    run_settings: RunSettings,
    tracker: StudyTracker | None = None,
) -> SearchOutcome:
    study_settings = trial_study(settings, evaluate)
    study_settings.check()
    with machine_worker(Path(settings.work_dir) / settings.study):
        return _search_model(
            entry, dataset_settings, zoo_folder, settings, study_settings, deploy, run_settings, tracker
        )


def _search_model(
    entry: ZooEntry,
    dataset_settings: Mapping[str, Any],
    zoo_folder: Path,
    settings: SearchSettings,
    study_settings: StudySettings,
    deploy: Mapping[str, Any] | None,
    run_settings: RunSettings,
    tracker: StudyTracker | None,
) -> SearchOutcome:
    folder = Path(settings.work_dir) / settings.study / entry.model_id
    monitor = EnergyMonitor(discover_sources())
    meter = RepetitionMeter.open(study_settings.protocol.idle_s) if settings.device != "cpu" else None
    try:
        optimizer = ModelOptimizer(entry, dataset_settings, zoo_folder, monitor, run_settings)
        space = space_for_model(settings.space, entry.model_id, optimizer.baselines.card.frameworks)
        settings = replace(settings, space=space)
        deployers = study_deployers(study_settings, deploy or {}, None, meter)
        variants_dir = Path(settings.variants_dir) / settings.study / entry.model_id

        def measurer(evaluation: EvaluationSet, split: str) -> VariantMeasurer:
            store = StudyStore(folder / split)
            return VariantMeasurer(
                optimizer, study_settings, deployers, evaluation, store, variants_dir, meter
            )

        study = open_study(settings, entry.model_id)
        objective = SearchObjective(
            settings, measurer(_validation_set(entry, optimizer), "validation"), tracker
        )
        worker = run_worker(study, objective, settings.n_trials, settings.poll_s)
        for framework, baseline in objective.measured_baselines.items():
            study.set_user_attr(
                f"baseline.{framework}.energy_per_item_j", float(baseline["energy_per_item_j"])
            )
            study.set_user_attr(f"baseline.{framework}.accuracy", float(baseline["accuracy"]))
        trials = trials_table(study, settings.max_accuracy_drop)
        front = front_trials(trials)
        from optuna.trial import FixedTrial  # a finished trial's parameters replayed: the same variant

        specs = {
            t.user_attrs["variant_id"]: suggest_variant(FixedTrial(t.params), settings.space)
            for t in _completed(study)
        }
        test = measurer(evaluation_set(entry, dataset_settings), "test")
        rows = measure_front(test, front, specs, study.study_name) if len(front) else []
    finally:
        monitor.close()
        if meter is not None:
            meter.close()
    logger.info(
        "search %s: %d trials in the study (%d completed here, %d failed here), %d on the Pareto front",
        study.study_name,
        len(trials),
        worker.completed,
        worker.failed,
        len(front),
    )
    return SearchOutcome(trials, rows, worker)


def _validation_set(entry: ZooEntry, optimizer: ModelOptimizer) -> EvaluationSet:
    """The held-back half of the validation split that the optimize code checks variants on."""
    x, y, pairs = optimizer.baselines.check
    return EvaluationSet(entry.task, entry.metric, x, y, pairs, entry.domain)


def _completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "variant_id" in t.user_attrs
    ]

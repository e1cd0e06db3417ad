"""Evaluate nodes: thin calls into ``green_deploy.evaluate``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from green_deploy.deploy.runner import DeploySettings, skip_reason
from green_deploy.errors import ConfigError
from green_deploy.evaluate.harness import RepetitionMeter
from green_deploy.evaluate.runner import (
    EvaluationError,
    StudyRunner,
    current_cells,
    evaluation_set,
    study_deployers,
)
from green_deploy.evaluate.store import StudyStore
from green_deploy.evaluate.study import StudySettings, expand_cells
from green_deploy.evaluate.summary import summary_markdown
from green_deploy.evaluate.tracking import active_run_tracker
from green_deploy.zoo.hub import has_random_weights
from green_deploy.zoo.spec import dataset_settings, require_known_models, select_entry

logger = logging.getLogger(__name__)


def evaluate_study(
    variants: pd.DataFrame,
    zoo: dict[str, Any],
    evaluate: dict[str, Any],
    deploy: dict[str, Any],
    credentials: dict[str, Any] | None,
) -> tuple[pd.DataFrame, pd.DataFrame, str, dict[str, Any]]:
    """Measure every pending cell of the study; the results and repetitions tables (every stored
    cell that matches today's variants and protocol), the summary, and what this run did."""
    settings = StudySettings.parse(evaluate)
    require_known_models("evaluate.models", settings.models, zoo)
    # a variant recorded for cuda only (fp8, CUDA graphs) is served when the study names cuda
    rows = [row for row in variants.to_dict("records") if skip_reason(row, settings.devices) is None]
    cells = expand_cells(rows, settings)
    if not cells:
        raise ConfigError(
            "the study selects no cell: no ok variant of evaluate.models / evaluate.variants in the variants "
            "table; run `kedro run --pipeline=optimize` for them first"
        )
    # accuracy passes are shared by every study of the work dir (keyed by artifact, not study)
    store = StudyStore(Path(settings.work_dir) / settings.study, Path(settings.work_dir) / "accuracy")

    def load(model_id: str):
        entry = select_entry(zoo["models"], model_id)
        return evaluation_set(entry, dataset_settings(zoo.get("datasets") or {}, entry))

    meter = RepetitionMeter.open(settings.protocol.idle_s) if set(settings.devices) - {"cpu"} else None
    tracker = _tracker(settings, evaluate)
    runner = StudyRunner(
        settings,
        rows,
        study_deployers(settings, deploy, credentials, meter),
        load,
        store,
        tracker=tracker,
        deploy_work_dir=DeploySettings.parse(deploy).work_dir,
        progress=_progress_bar(settings.study),
        meter=meter,
    )
    outcome = None
    try:
        outcome = runner.run(cells)
    finally:
        if meter is not None:
            meter.close()
        if tracker is not None:  # the study's parent run ends with the run (a resumed run reopens it)
            tracker.finish(failed=outcome is None or bool(outcome.failures))
    kept = current_cells(store, rows, settings)
    results = pd.DataFrame([cell["row"] for cell in kept])
    if not results.empty:  # False for a model with random weights: its accuracy is chance
        results["accuracy_applicable"] = results.model_id.map(
            {m: not has_random_weights(select_entry(zoo["models"], m)) for m in results.model_id.unique()}
        )
    repetitions = pd.DataFrame([r for cell in kept for r in cell["repetitions"]])
    summary = summary_markdown(results, outcome.measured, outcome.resumed, len(outcome.failures))
    logger.info("study %r:\n%s", settings.study, summary)
    return results, repetitions, summary, asdict(outcome)


def check_evaluation(outcome: dict[str, Any]) -> None:
    """Fail the run, after the tables are saved, when a variant could not be measured."""
    failures = outcome["failures"]
    if failures:
        lines = "\n".join(
            f"- {f['model_id']}/{f['variant_id']} on {f['target']} ({f['cells']} cells): {f['reason']}"
            for f in failures
        )
        raise EvaluationError(
            f"{len(failures)} variant(s) could not be measured; every other cell is stored and a new "
            f"`kedro run --pipeline=evaluate` measures only what is missing:\n{lines}"
        )


def _tracker(settings: StudySettings, raw: dict[str, Any]):
    """The study's MLflow parent run (none when tracking is off), named on kedro-mlflow's run."""
    tracker = active_run_tracker(settings.study, raw)
    if tracker is not None:
        import mlflow

        mlflow.set_tag("green_deploy.study_run_id", tracker.parent_run_id)
    return tracker


def _progress_bar(study: str):
    from tqdm import tqdm

    return partial(tqdm, desc=f"evaluate {study}", mininterval=1.0, dynamic_ncols=True)

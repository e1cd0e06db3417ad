"""Search nodes: thin calls into ``green_deploy.search``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from green_deploy.config import parse_settings
from green_deploy.evaluate.tracking import active_run_tracker
from green_deploy.optimize.runner import RunSettings
from green_deploy.search.runner import search_model
from green_deploy.search.study import SearchSettings
from green_deploy.zoo.spec import dataset_settings, select_entry


def search_zoo_model(
    zoo: dict[str, Any],
    optimize: dict[str, Any],
    evaluate: dict[str, Any],
    deploy: dict[str, Any],
    search: dict[str, Any],
    model_id: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The model's study run to its budget (with every other worker of it): its trials, and its
    Pareto set measured on the test split."""
    settings = SearchSettings.parse(search)
    entry = select_entry(zoo["models"], model_id)
    tracker = active_run_tracker(settings.study_name(model_id), search, kind="search")
    finished = False
    try:
        outcome = search_model(
            entry,
            dataset_settings(zoo.get("datasets") or {}, entry),
            Path(zoo["models_dir"]) / model_id,
            settings,
            evaluate,
            deploy,
            parse_settings(RunSettings, optimize.get("run"), "optimize.run"),
            tracker=tracker,
        )
        finished = True
    finally:
        if tracker is not None:  # the search's parent run ends with this worker (another reopens it)
            tracker.finish(failed=not finished)
    return outcome.trials.to_dict("records"), outcome.front


def search_tables(*per_model: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model's trials, and every model's Pareto set (measured on the test split)."""
    trials, fronts = per_model[0::2], per_model[1::2]
    return (
        pd.DataFrame([row for rows in trials for row in rows]),
        pd.DataFrame([row for rows in fronts for row in rows]),
    )

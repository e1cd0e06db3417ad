"""A study read back from MLflow: its parent run, its cell runs (parameters, metrics, energy
source tags, the ``repetitions.json`` artifact) and its reference measurements (the parent's
``reference/`` artifacts), as ``evaluate.tracking`` logged them."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from green_deploy.errors import ArtifactError
from green_deploy.evaluate.reference import VERSION as REFERENCE_VERSION
from green_deploy.evaluate.tracking import CELL_TAG, KIND_TAG, PARENT_TAG, REFERENCE_ARTIFACTS, STUDY_TAG

RUN_ID = re.compile(r"[0-9a-f]{32}")
SOURCE_TAG = re.compile(r"energy\.(\w+)\.source")


def read_study(
    tracking_uri: str, run: str
) -> tuple[str, list[tuple[dict[str, Any], list[float]]], list[list[float]]]:
    """(a name for the study, each cell's row and J/inference repetitions, the repetitions of
    each measurement of the reference work of the current version)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if RUN_ID.fullmatch(run):
        try:
            parent = client.get_run(run)
        except MlflowException as error:
            raise ArtifactError(f"MLflow has no run {run} at {tracking_uri}: {error}") from error
    else:
        found = client.search_runs(
            experiments,
            filter_string=f"tags.`{STUDY_TAG}` = '{run}' and tags.`{KIND_TAG}` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            raise ArtifactError(
                f"MLflow at {tracking_uri} has no study run named {run!r} (tag {STUDY_TAG}); give a run id or a "
                "study name that `kedro run --pipeline=evaluate` logged"
            )
        parent = found[0]
    parent_id = parent.info.run_id
    name = f"mlflow:{parent.data.tags.get(STUDY_TAG, parent_id)} ({parent_id[:8]})"
    cells = []
    with tempfile.TemporaryDirectory() as folder:
        for child in _children(client, experiments, parent_id):
            if CELL_TAG not in child.data.tags:
                continue
            path = client.download_artifacts(child.info.run_id, "repetitions.json", folder)
            repetitions = json.loads(Path(path).read_text())
            cells.append((_row(child), [float(r["energy_per_item_j"]) for r in repetitions]))
        reference: list[list[float]] = []
        for artifact in client.list_artifacts(parent_id, REFERENCE_ARTIFACTS):
            stored = json.loads(Path(client.download_artifacts(parent_id, artifact.path, folder)).read_text())
            if stored.get("version") == REFERENCE_VERSION:
                reference.append([float(v) for v in stored["energy_per_unit_j"]])
    return name, cells, reference


def _children(client: Any, experiments: list[str], parent_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiments,
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _row(run: Any) -> dict[str, Any]:
    """A cell's row as the study folder holds it: parameters, metrics, and the energy sources
    (logged as tags ``energy.<component>.source``)."""
    row: dict[str, Any] = {**run.data.params, **run.data.metrics}
    for tag, value in run.data.tags.items():
        match = SOURCE_TAG.fullmatch(tag)
        if match:
            row[f"{match.group(1)}_source"] = value
    return row

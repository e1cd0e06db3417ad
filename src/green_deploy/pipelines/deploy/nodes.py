"""Deploy nodes: thin calls into ``green_deploy.deploy.runner``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from green_deploy.deploy.base import STATUS_IN_SERVICE
from green_deploy.deploy.runner import (
    COLUMNS,
    STATUS_FAILED,
    STATUS_STOPPED,
    DeploymentCheckError,
    DeploySettings,
    build_deployers,
    deploy_model,
    select_rows,
    skip_reason,
    still_running,
    validation_examples,
)
from green_deploy.zoo.spec import dataset_settings, require_known_models, select_entry

logger = logging.getLogger(__name__)

_METRICS = ("check_max_abs_diff", "check_energy_j", "startup_s", "rss_bytes")


def deploy_zoo_model(
    variants: pd.DataFrame,
    zoo: dict[str, Any],
    deploy: dict[str, Any],
    credentials: dict[str, Any] | None,
    model_id: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Deploy and check every selected variant of one zoo model on every target; the rows of the
    deployments table and their MLflow metrics (``<model>.<variant>.<target>.<metric>``)."""
    settings = DeploySettings.parse(deploy)
    require_known_models("deploy.models", settings.models, zoo)
    if settings.models and model_id not in settings.models:
        return [], {}
    rows = select_rows(variants.to_dict("records"), model_id, settings.only)
    examples = None
    if any(skip_reason(row) is None for row in rows):
        entry = select_entry(zoo["models"], model_id)
        examples = validation_examples(
            entry, dataset_settings(zoo.get("datasets") or {}, entry), settings.check.examples
        )
    deployers = build_deployers(settings, deploy, credentials)
    results = deploy_model(model_id, rows, examples, deployers, settings.check)
    metrics = {
        f"{r.model_id}.{r.variant_id}.{r.target}.{name}": {"value": float(value), "step": 0}
        for r in results
        for name in _METRICS
        if (value := getattr(r, name)) is not None
    }
    return [r.to_row() for r in results], metrics


def deployments_table(deploy: dict[str, Any], *rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per model, variant and target. A local server (the rows with a pid) that answered
    its check but was stopped afterwards to stay within ``deploy.local.max_servers`` is ``stopped``."""
    table = pd.DataFrame([row for model_rows in rows for row in model_rows], columns=list(COLUMNS))
    running = still_running(DeploySettings.parse(deploy).work_dir)
    for index, row in table.iterrows():
        if row.status == STATUS_IN_SERVICE and pd.notna(row.pid):
            if (row.model_id, row.variant_id, int(row.pid)) not in running:
                table.loc[index, "status"] = STATUS_STOPPED
    counts = table.groupby(["target", "status"]).size().to_dict() if len(table) else {}
    logger.info(
        "deployments: %s", ", ".join(f"{t} {s}: {n}" for (t, s), n in sorted(counts.items())) or "none"
    )
    return table


def check_deployments(deployments: pd.DataFrame) -> None:
    """Fail the run, after the table is saved, when any deployment did not start or answer right."""
    failed = deployments[deployments.status == STATUS_FAILED]
    if len(failed):
        lines = "\n".join(
            f"- {r.model_id}/{r.variant_id} on {r.target}: {r.reason}" for r in failed.itertuples()
        )
        raise DeploymentCheckError(
            f"{len(failed)} of {len(deployments)} deployments failed (data/07_model_output/deployments.parquet "
            f"has every row; servers that did start are stopped with `kedro run --pipeline=undeploy`):\n{lines}"
        )

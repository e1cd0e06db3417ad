"""Compare node: two studies through ``green_deploy.compare``, the result in the run's MLflow run."""

from __future__ import annotations

import logging
from typing import Any

from green_deploy.compare.studies import (
    MLFLOW_PREFIX,
    CompareSettings,
    RegressionFound,
    Study,
    compare_studies,
    write_outputs,
)

logger = logging.getLogger(__name__)


def compare(params: dict[str, Any]) -> dict[str, Any]:
    """The verdicts of ``compare.candidate`` against ``compare.baseline``: ``compare.md`` and
    ``compare.json`` under ``compare.out``, and in kedro-mlflow's run (tagged with both
    studies, metrics per verdict); raises ``RegressionFound`` when ``compare.fail_on`` says so."""
    import mlflow

    settings = CompareSettings.parse(params)
    tracking_uri = mlflow.get_tracking_uri()
    baseline = Study.load(settings.baseline or "", tracking_uri)
    candidate = Study.load(settings.candidate or "", tracking_uri)
    comparison = compare_studies(
        baseline, candidate, settings.margin, settings.alpha, settings.allow_differences
    )
    markdown, data = write_outputs(comparison, settings.out)
    logger.info("\n%s", markdown.read_text())
    if mlflow.active_run() is not None:
        mlflow.set_tags(
            {
                "green_deploy.run_kind": "compare",
                "green_deploy.compare.baseline": _link(settings.baseline or "", baseline),
                "green_deploy.compare.candidate": _link(settings.candidate or "", candidate),
            }
        )
        mlflow.log_metrics({f"cells_{verdict}": float(n) for verdict, n in comparison.counts().items()})
        mlflow.log_artifact(str(markdown), "compare")
        mlflow.log_artifact(str(data), "compare")
    if comparison.failed(settings.fail_on):
        raise RegressionFound(
            f"{candidate.name} regressed against {baseline.name} (compare.fail_on={settings.fail_on}); see {markdown}"
        )
    return comparison.counts()


def _link(where: str, study: Study) -> str:
    """What a study is in MLflow's tags: its parent run (``mlflow:...``) or its folder."""
    return study.name if where.startswith(MLFLOW_PREFIX) else f"folder {where}"

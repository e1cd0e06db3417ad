"""Undeploy node: a thin call into ``green_deploy.deploy.runner.undeploy_all``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from green_deploy.deploy.runner import DeploySettings, undeploy_all


def undeploy(deploy: dict[str, Any], credentials: dict[str, Any] | None) -> pd.DataFrame:
    """Stop every local server recorded under ``deploy.work_dir`` and delete the recorded cloud
    deployments of the configured targets; one row per deployment removed."""
    removed = undeploy_all(DeploySettings.parse(deploy), deploy, credentials)
    return pd.DataFrame(
        [(d.target, d.model_id, d.variant_id, d.endpoint_name) for d in removed],
        columns=["target", "model_id", "variant_id", "endpoint_name"],
    )

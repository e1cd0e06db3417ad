"""Project hooks: cloud credentials for the deploy pipelines, and a clear error when a pipeline
needs the optimize pipeline's variants table before it exists."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from green_deploy.deploy.runner import CloudCredentials
from green_deploy.errors import ArtifactError

CREDENTIALS_DATASET = "deploy_credentials"
VARIANTS_DATASET = "variants"


class DeployHooks:
    @hook_impl
    def after_catalog_created(self, catalog: Any, conf_creds: dict[str, Any]) -> None:
        """Put the ``aws`` and ``azure`` entries of ``credentials.yml`` in the catalog as
        ``deploy_credentials`` (in memory, never copied: not a parameter, so never sent to MLflow)."""
        catalog[CREDENTIALS_DATASET] = MemoryDataset(CloudCredentials(conf_creds), copy_mode="assign")

    @hook_impl
    def before_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        if VARIANTS_DATASET in pipeline.inputs() and not catalog.exists(VARIANTS_DATASET):
            raise ArtifactError(
                "nothing is optimized yet: the variants table (catalog entry 'variants', "
                "data/07_model_output/variants.parquet) does not exist; run "
                "`kedro run --pipeline=optimize` first (after `kedro run --pipeline=zoo`)"
            )

"""Project hooks: cloud credentials for the deploy pipelines, a clear error when a pipeline
needs the optimize pipeline's variants table before it exists, and where a run's time went."""

from __future__ import annotations

import logging
import time
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from green_deploy.deploy.runner import CloudCredentials
from green_deploy.errors import ArtifactError

logger = logging.getLogger(__name__)

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


class ManifestHooks:
    """Datasets are read through the manifests of the configuration in use (``--conf-source``,
    ``--env``), not the repository's ``conf/base/manifests``."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from pathlib import Path

        from green_deploy.zoo.data.manifest import use_manifest_dir

        source = Path(context.config_loader.conf_source)
        env = getattr(context, "env", None) or ""
        folders = (
            [source / env / "manifests", source / "base" / "manifests"]
            if env
            else [source / "base" / "manifests"]
        )
        use_manifest_dir(next((folder for folder in folders if folder.is_dir()), folders[-1]))


class RunTimingHooks:
    """Where a run's time goes: each node's wall time, and at the end the time per pipeline (a
    node's tag names its pipeline), logged and, when a run is active, sent to MLflow as
    ``time.<pipeline>_s`` metrics."""

    def __init__(self) -> None:
        self._run_started = 0.0
        self._node_started: dict[str, float] = {}
        self._by_pipeline: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._run_started = time.perf_counter()
        self._node_started.clear()
        self._by_pipeline.clear()

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        duration_s = time.perf_counter() - self._node_started.pop(node.name, time.perf_counter())
        for tag in node.tags or {"untagged"}:
            self._by_pipeline[tag] = self._by_pipeline.get(tag, 0.0) + duration_s
        logger.info("node %s took %.1f s", node.name, duration_s)

    @hook_impl
    def after_pipeline_run(self) -> None:
        total_s = time.perf_counter() - self._run_started
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self._by_pipeline.items())
        logger.info("time by pipeline: %s; run %.1f s", parts, total_s)
        import mlflow

        if mlflow.active_run() is not None:
            metrics = {f"time.{name}_s": seconds for name, seconds in self._by_pipeline.items()}
            mlflow.log_metrics({**metrics, "time.run_s": total_s})

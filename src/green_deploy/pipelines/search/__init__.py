"""The search pipeline: Optuna's multi-objective search over optimization settings, per model."""

from green_deploy.pipelines.search.pipeline import create_pipeline

__all__ = ["create_pipeline"]

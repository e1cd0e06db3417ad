"""The estimate pipeline: energy predicted before running, checked against the study."""

from green_deploy.pipelines.estimate.pipeline import create_pipeline

__all__ = ["create_pipeline"]

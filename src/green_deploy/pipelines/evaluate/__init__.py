"""The evaluate pipeline: the measured study."""

from green_deploy.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]

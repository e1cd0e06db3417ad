"""The ``optimize`` pipeline: every declared variant of every zoo model, with its cost and effect."""

from green_deploy.pipelines.optimize.pipeline import create_pipeline

__all__ = ["create_pipeline"]

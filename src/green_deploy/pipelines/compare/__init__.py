"""Compare: a verdict per matched cell of two studies."""

from green_deploy.pipelines.compare.pipeline import create_pipeline

__all__ = ["create_pipeline"]

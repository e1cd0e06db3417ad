"""The ``deploy`` pipeline: every ok variant of every zoo model on every configured target, checked."""

from green_deploy.pipelines.deploy.pipeline import create_pipeline

__all__ = ["create_pipeline"]

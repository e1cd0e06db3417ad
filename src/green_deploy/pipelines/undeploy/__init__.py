"""The ``undeploy`` pipeline: stop every recorded local server and delete recorded cloud endpoints."""

from green_deploy.pipelines.undeploy.pipeline import create_pipeline

__all__ = ["create_pipeline"]

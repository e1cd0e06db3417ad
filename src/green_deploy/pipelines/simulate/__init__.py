"""The simulate pipeline: energy and carbon of federated vs centralized (and continual) learning."""

from green_deploy.pipelines.simulate.pipeline import create_pipeline

__all__ = ["create_pipeline"]

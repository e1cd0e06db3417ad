"""The tradeoff pipeline: the study's research questions, plots and report."""

from green_deploy.pipelines.tradeoff.pipeline import create_pipeline

__all__ = ["create_pipeline"]

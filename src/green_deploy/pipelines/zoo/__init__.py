"""The ``zoo`` pipeline: build every configured model in PyTorch and Keras, evaluate, log to MLflow."""

from green_deploy.pipelines.zoo.pipeline import create_pipeline

__all__ = ["create_pipeline"]

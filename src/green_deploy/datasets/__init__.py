"""Kedro datasets for green-deploy's own artifacts; thin wrappers over ``green_deploy.zoo.artifacts``."""

from green_deploy.datasets.models import KerasModelDataset, TorchModelDataset

__all__ = ["KerasModelDataset", "TorchModelDataset"]

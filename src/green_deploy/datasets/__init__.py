"""Kedro datasets for green-deploy's own artifacts; thin wrappers over the library's modules."""

from green_deploy.datasets.folders import LoggedFoldersDataset
from green_deploy.datasets.models import KerasModelDataset, TorchModelDataset

__all__ = ["KerasModelDataset", "LoggedFoldersDataset", "TorchModelDataset"]

"""The few named errors green-deploy raises; each message tells the user what to do next."""

from __future__ import annotations


class GreenDeployError(Exception):
    """Base class: every error the tool raises on purpose."""


class ConfigError(GreenDeployError):
    """A configuration entry is missing, misspelt or has a value of the wrong kind."""


class ModelNotFoundError(GreenDeployError):
    """A model id, family or hub model that is not known or cannot be found."""


class DatasetSourceError(GreenDeployError):
    """A dataset's source files are missing or differ from the frozen manifest."""


class ArtifactError(GreenDeployError):
    """A saved model or result is missing, incomplete or corrupt."""


class HubUnavailableError(GreenDeployError):
    """A hub model was requested but neither a local copy nor the hub can be reached."""

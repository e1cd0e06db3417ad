"""The deploy tests' tiny saved variant, measured here as a study of one variant."""

from tests.deploy.conftest import tiny  # noqa: F401

"""Project hooks: the manifests of the configuration in use, and where a run's time went."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from green_deploy.hooks import ManifestHooks
from green_deploy.zoo.data.manifest import default_manifest_dir, use_manifest_dir


@pytest.fixture(autouse=True)
def _default_manifests():
    yield
    use_manifest_dir(None)


def _context(conf_source, env):
    return SimpleNamespace(config_loader=SimpleNamespace(conf_source=str(conf_source)), env=env)


def test_datasets_read_the_manifests_of_the_configuration_in_use(tmp_path):
    repository = default_manifest_dir()
    (tmp_path / "base" / "manifests").mkdir(parents=True)
    ManifestHooks().after_context_created(_context(tmp_path, "local"))
    assert default_manifest_dir() == tmp_path / "base" / "manifests" != repository
    (tmp_path / "full" / "manifests").mkdir(parents=True)
    ManifestHooks().after_context_created(_context(tmp_path, "full"))
    assert default_manifest_dir() == tmp_path / "full" / "manifests"  # an environment's own, when it has them
    use_manifest_dir(None)
    assert default_manifest_dir() == repository

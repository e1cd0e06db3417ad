"""Raw datasets by name, built only from files a committed manifest pins by sha256.

``load_dataset`` never scans the machine: it reads the files listed in
``conf/base/manifests/<name>.json`` and refuses to build from a missing or changed one, so every
machine evaluates on the same examples. ``freeze_manifest`` is the only place that scans; for a
user's own data (``files``), whose manifest nobody committed, the first load calls it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from green_deploy.errors import ConfigError, DatasetSourceError, GreenDeployError
from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.manifest import (
    LOCAL_PROVIDER,
    build_entries,
    debian_providers_of,
    default_manifest_dir,
    manifest_path,
    read_manifest,
    read_verified,
    resolve_root,
    write_manifest,
)
from green_deploy.zoo.data.settings import parse_dataset_settings
from green_deploy.zoo.data.source import (
    DatasetSource,
    UserDataSource,
    manifest_name,
    refreeze_command,
    require_covered,
    root_of,
)

__all__ = [
    "RawDataset",
    "RawSplit",
    "freeze_manifest",
    "known_datasets",
    "load_dataset",
    "required_debian_packages",
    "system_datasets",
]

logger = logging.getLogger(__name__)

_MODULES = {
    "code_languages": "green_deploy.zoo.data.code_languages",
    "fashion_mnist": "green_deploy.zoo.data.fashion_mnist",
    "files": "green_deploy.zoo.data.files",
    "fortunes": "green_deploy.zoo.data.fortunes",
    "gettext_langid": "green_deploy.zoo.data.gettext_langid",
    "stdlib_bytes": "green_deploy.zoo.data.stdlib_bytes",
    "stdlib_retrieval": "green_deploy.zoo.data.stdlib_retrieval",
}


def known_datasets() -> list[str]:
    return sorted(_MODULES)


def system_datasets() -> list[str]:
    """The datasets built from what a machine has installed, each with one committed manifest
    (what ``freeze all`` and ``check all`` cover); the others read a user's own files."""
    return [name for name in known_datasets() if not isinstance(get_source(name), UserDataSource)]


def get_source(name: str) -> DatasetSource:
    """The dataset module registered under ``name``.

    Raises:
        ConfigError: ``name`` is not a known dataset.
    """
    if name not in _MODULES:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    source: DatasetSource = importlib.import_module(_MODULES[name]).SOURCE
    return source


def load_dataset(
    name: str, settings: Mapping[str, Any] | None = None, manifest_dir: Path | None = None
) -> RawDataset:
    """Build dataset ``name`` from the files its manifest pins.

    A user's own data (a ``UserDataSource``) with no manifest yet is frozen first; the manifest
    is removed again when the data does not build, so fixing the data needs no refreeze.

    Raises:
        ConfigError: unknown dataset or setting, or a bad setting value.
        DatasetSourceError: the manifest is missing, or a listed file is missing or changed.
    """
    started_s = time.perf_counter()
    source = get_source(name)
    parsed = parse_dataset_settings(source.settings_class, settings, name)
    stem, root = manifest_name(source, parsed), root_of(source, parsed)
    folder = manifest_dir or default_manifest_dir()
    frozen_now = None
    if isinstance(source, UserDataSource) and not manifest_path(stem, folder).exists():
        frozen_now = freeze_manifest(name, settings, folder)
    try:
        dataset, n_files = _build(source, parsed, stem, root, folder)
    except GreenDeployError:
        if frozen_now is not None:
            frozen_now.unlink(missing_ok=True)
            logger.info("removed %s again: the data it froze does not build", frozen_now)
        raise
    logger.info(
        "loaded %s: train %d, val %d, test %d from %d files in %.1f s",
        name,
        len(dataset.train),
        len(dataset.val),
        len(dataset.test),
        n_files,
        time.perf_counter() - started_s,
    )
    return dataset


def _build(source: DatasetSource, parsed: Any, stem: str, root: str, folder: Path) -> tuple[RawDataset, int]:
    """The dataset from manifest ``stem`` in ``folder``, and how many files it read."""
    name = source.name
    manifest = read_manifest(stem, folder, refreeze_command(source, parsed, folder))
    if manifest.root != root:
        raise DatasetSourceError(
            f"manifest {manifest.path} has root {manifest.root!r}, but {name!r} reads {root!r}; "
            f"refreeze it: {manifest.refreeze}"
        )
    require_covered(source, manifest.scan_settings, parsed, folder)
    files = read_verified(manifest, source.wanted([entry.path for entry in manifest.files], parsed))
    dataset = source.build(files, parsed)
    extra = {**dataset.extra, "settings": asdict(parsed), "manifest": str(manifest.path)}
    dataset = replace(dataset, source=source.describe(parsed), manifest_sha256=manifest.sha256, extra=extra)
    return dataset, len(files)


def freeze_manifest(
    name: str, settings: Mapping[str, Any] | None = None, manifest_dir: Path | None = None
) -> Path:
    """Scan this machine for dataset ``name``'s candidate files and write their manifest.

    The whole candidate set is frozen (before per-split caps), so lowering a cap later needs no
    new manifest. Returns the manifest's path.

    Raises:
        DatasetSourceError: the source directory or its files are not installed here.
    """
    source = get_source(name)
    parsed = parse_dataset_settings(source.settings_class, settings, name)
    own = isinstance(source, UserDataSource)
    root = root_of(source, parsed)
    root_path = resolve_root(root)
    # A user's data has no package to install: its ``scan`` says what is missing.
    if not own and not root_path.is_dir():
        raise DatasetSourceError(f"dataset {name!r}: {root_path} does not exist; install its package first")
    paths = source.scan(parsed, root_path)
    if not paths:
        raise DatasetSourceError(f"dataset {name!r}: no candidate files under {root_path}")
    entries = build_entries(root, paths, LOCAL_PROVIDER if own else None)
    stem = manifest_name(source, parsed)
    refreeze = refreeze_command(source, parsed, manifest_dir or default_manifest_dir())
    path = write_manifest(
        manifest_path(stem, manifest_dir), stem, root, source.scan_settings(parsed), entries, refreeze
    )
    logger.info(
        "froze %s: %d files, %d bytes -> %s", stem, len(entries), sum(e.size_bytes for e in entries), path
    )
    return path


def required_debian_packages(manifest_dir: Path | None = None) -> list[str]:
    """The Debian packages every manifest's system files come from, sorted, for ``apt-get install``."""
    directory = manifest_dir or default_manifest_dir()
    packages: set[str] = set()
    for path in sorted(directory.glob("*.json")):
        packages |= debian_providers_of(read_manifest(path.stem, directory))
    return sorted(packages)

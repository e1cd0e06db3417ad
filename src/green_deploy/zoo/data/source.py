"""What each dataset module provides: how to find its files, and how to build splits from them.

Finding (``scan``) runs only when a manifest is frozen; building (``build``) sees only the bytes
of files the manifest lists, already checked against their hashes. A new dataset is a new
module exposing ``SOURCE``, not a new branch in the loader.

A source over a user's own files (``UserDataSource``) names its manifest and root from its
settings, so several such datasets coexist; ``manifest_name`` and ``root_of`` fall back to
``source.name`` and ``source.root`` for the built-in sources.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from green_deploy.errors import DatasetSourceError
from green_deploy.zoo.data.base import RawDataset
from green_deploy.zoo.data.manifest import default_manifest_dir, freeze_command


class DatasetSource(Protocol):
    """One dataset; ``root`` is symbolic (``stdlib``, ``purelib``) or an absolute system path.

    ``subset_keys`` name scan settings for which the loading settings may ask for a subset of
    what was frozen (a list, or a mapping compared item by item); ``at_most_keys`` name caps that
    may be lowered; every other scan setting must equal the frozen one.
    """

    name: str
    root: str
    settings_class: type[Any]
    subset_keys: tuple[str, ...]
    at_most_keys: tuple[str, ...]

    def scan(self, settings: Any, root_path: Path) -> list[str]:
        """Every candidate file (POSIX paths relative to ``root_path``), before any split cap."""
        ...

    def scan_settings(self, settings: Any) -> dict[str, Any]:
        """The settings that decide which files ``scan`` finds; recorded in the manifest."""
        ...

    def needs(self, settings: Any) -> dict[str, Any]:
        """What loading with ``settings`` needs of the frozen scan settings (usually equal to them)."""
        ...

    def wanted(self, paths: Sequence[str], settings: Any) -> list[str]:
        """The manifest's files these settings read (a subset when settings ask for less)."""
        ...

    def build(self, files: Mapping[str, bytes], settings: Any) -> RawDataset:
        """The splits, from verified file contents keyed by relative path."""
        ...

    def describe(self, settings: Any) -> str:
        """A one-line human description of where the data comes from."""
        ...


@runtime_checkable
class UserDataSource(Protocol):
    """A source over a user's own files, which differ per settings (a path), unlike the system's.

    Its manifest is named per settings (several own datasets coexist), its root is the data's
    absolute directory, its files come from no package, and the first load freezes the manifest
    (there is no committed one to start from).
    """

    def manifest_name(self, settings: Any) -> str:
        """The manifest's file stem for these settings (letters, digits, ``_`` and ``-``)."""
        ...

    def root_for(self, settings: Any) -> str:
        """The absolute directory the data's files are relative to.

        Raises:
            DatasetSourceError: the data the settings name does not exist.
        """
        ...


def manifest_name(source: DatasetSource, settings: Any) -> str:
    """The manifest's file stem: per settings for a ``UserDataSource``, else the source's name."""
    return source.manifest_name(settings) if isinstance(source, UserDataSource) else source.name


def root_of(source: DatasetSource, settings: Any) -> str:
    """The manifest root: per settings for a ``UserDataSource``, else the source's own."""
    return source.root_for(settings) if isinstance(source, UserDataSource) else source.root


def refreeze_command(source: DatasetSource, settings: Any, manifest_dir: Path | None = None) -> str:
    """The exact command that refreezes the manifest ``settings`` read: a ``UserDataSource``'s
    names its settings and folder (its manifest depends on them); a built-in source's, its name."""
    if not isinstance(source, UserDataSource):
        return freeze_command(source.name)
    folder = Path(os.path.abspath(manifest_dir or default_manifest_dir()))  # runs from any directory
    return freeze_command(source.name, source.scan_settings(settings), folder)


def require_covered(
    source: DatasetSource, frozen: Mapping[str, Any], settings: Any, manifest_dir: Path | None = None
) -> None:
    """Check the frozen file set holds every file ``settings`` need.

    Raises:
        DatasetSourceError: a scan setting asks for more (or other) files than were frozen.
    """
    # A JSON round trip makes tuples lists, as they are in the manifest.
    current = json.loads(json.dumps(source.needs(settings)))
    problems = []
    for key, value in current.items():
        if key not in frozen:
            problems.append(f"{key} was not recorded")
        elif key in source.subset_keys:
            if not _is_subset(value, frozen[key]):
                problems.append(f"{key}={value!r} is not within the frozen {frozen[key]!r}")
        elif key in source.at_most_keys:
            if frozen[key] is not None and (value is None or value > frozen[key]):
                problems.append(f"{key}={value!r} exceeds the frozen {frozen[key]!r}")
        elif value != frozen[key]:
            problems.append(f"{key}={value!r} differs from the frozen {frozen[key]!r}")
    if problems:
        command = (
            refreeze_command(source, settings, manifest_dir)
            if isinstance(source, UserDataSource)
            else f"{freeze_command(source.name)} --settings '<json>'"
        )
        raise DatasetSourceError(
            f"dataset {source.name!r}: the manifest was frozen for other settings ({'; '.join(problems)}). "
            f"Refreeze with these settings: {command}"
        )


def _is_subset(value: Any, frozen: Any) -> bool:
    if isinstance(value, dict) and isinstance(frozen, dict):
        return all(key in frozen and frozen[key] == item for key, item in value.items())
    if isinstance(value, list) and isinstance(frozen, list):
        return set(value) <= set(frozen)
    return bool(value == frozen)

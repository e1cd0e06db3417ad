"""Frozen manifests: the exact files a dataset is built from, with their hashes and providers.

Datasets built from what a machine has installed (Debian packages, the Python standard library,
site-packages) would silently differ between machines. A manifest, committed under
``conf/base/manifests/``, lists every file a dataset may use; loading reads only those files and
refuses to build from any that is missing or changed, so the evaluation set is the same
everywhere or the run stops and says how to get the files.

The file holds one JSON object per file on its own line, so a refreeze diffs readably.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shlex
import subprocess
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from green_deploy.errors import DatasetSourceError

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
STDLIB_ROOT = "stdlib"
PURELIB_ROOT = "purelib"
STDLIB_PROVIDER = "python-stdlib"
UNKNOWN_PROVIDER = "unknown"
PIP_PROVIDER = "pip"
LOCAL_PROVIDER = "local"  # a user's own file: no package installs it, so none is named for it
_DPKG_BATCH = 300  # paths per `dpkg -S` call: one call per file takes minutes for thousands
_SHOW_FIRST = 5  # files named in an error message


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: ``path`` is POSIX, relative to the manifest's root."""

    path: str
    sha256: str
    size_bytes: int
    provider: str


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest; ``sha256`` is the hash of the manifest file itself."""

    dataset: str
    root: str
    python_version: str
    scan_settings: dict[str, Any]
    files: tuple[FileEntry, ...]
    sha256: str
    path: Path
    refreeze: str

    @property
    def root_path(self) -> Path:
        return resolve_root(self.root)


def freeze_command(
    name: str, settings: Mapping[str, Any] | None = None, manifest_dir: Path | None = None
) -> str:
    """The shell command that freezes ``name``'s manifest (with these settings, into that folder)."""
    folder = "" if manifest_dir is None else f" --manifest-dir {shlex.quote(str(manifest_dir))}"
    options = (
        "" if settings is None else f" --settings {shlex.quote(json.dumps(dict(settings), sort_keys=True))}"
    )
    return f"python -m green_deploy.zoo.data{folder} freeze {name}{options}"


# The manifests of the configuration in use, once a Kedro run has said which (``use_manifest_dir``).
_IN_USE: dict[str, Path] = {}


def use_manifest_dir(folder: Path | None) -> None:
    """Read manifests from ``folder`` from now on (a Kedro run's ``<conf_source>/<env>/manifests``,
    see ``green_deploy.hooks``); ``None``: the default again."""
    _IN_USE.pop("manifests", None)
    if folder is not None:
        _IN_USE["manifests"] = Path(folder)


def default_manifest_dir() -> Path:
    """The configuration in use's manifests (``use_manifest_dir``); else ``<repo>/conf/base/manifests``
    found from this file, or the working directory's (an installed, non-editable package has no
    repository above it)."""
    if "manifests" in _IN_USE:
        return _IN_USE["manifests"]
    repo_dir = Path(__file__).resolve().parents[4] / "conf" / "base" / "manifests"
    return repo_dir if repo_dir.is_dir() else Path.cwd() / "conf" / "base" / "manifests"


def manifest_path(name: str, manifest_dir: Path | None = None) -> Path:
    return (manifest_dir or default_manifest_dir()) / f"{name}.json"


def resolve_root(root: str) -> Path:
    """A manifest's symbolic root (``stdlib``, ``purelib``) or absolute system path, on this machine."""
    if root == STDLIB_ROOT:
        return Path(sysconfig.get_paths()["stdlib"])
    if root == PURELIB_ROOT:
        return Path(sysconfig.get_paths()["purelib"])
    if not Path(root).is_absolute():
        raise DatasetSourceError(
            f"manifest root {root!r} is neither {STDLIB_ROOT!r}, {PURELIB_ROOT!r} nor absolute"
        )
    return Path(root)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- writing -------------------------------------------------------------------------------


def build_entries(root: str, paths: Sequence[str], provider: str | None = None) -> list[FileEntry]:
    """Hash every file and look up the package or distribution that installed it (``provider``,
    when given, for every file instead: a user's own files come from no package)."""
    root_path = resolve_root(root)
    providers = _providers(root, root_path, paths) if provider is None else dict.fromkeys(paths, provider)
    entries = []
    for rel in paths:
        data = (root_path / rel).read_bytes()
        entries.append(FileEntry(rel, sha256_bytes(data), len(data), providers.get(rel, UNKNOWN_PROVIDER)))
    return entries


def write_manifest(
    path: Path,
    dataset: str,
    root: str,
    scan_settings: Mapping[str, Any],
    entries: Sequence[FileEntry],
    refreeze: str | None = None,
) -> Path:
    header: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "root": root,
        "python_version": platform.python_version() if root in (STDLIB_ROOT, PURELIB_ROOT) else "",
        "scan_settings": scan_settings,
        "n_files": len(entries),
        "total_bytes": sum(entry.size_bytes for entry in entries),
        "refreeze": refreeze or freeze_command(dataset),
    }
    lines = [f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}," for key, value in header.items()]
    rows = [
        json.dumps({"path": e.path, "sha256": e.sha256, "size": e.size_bytes, "provider": e.provider})
        for e in sorted(entries, key=lambda e: e.path)
    ]
    text = (
        "{\n"
        + "\n".join(lines)
        + '\n  "files": [\n'
        + ",\n".join(f"    {row}" for row in rows)
        + "\n  ]\n}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _providers(root: str, root_path: Path, paths: Sequence[str]) -> dict[str, str]:
    if root == STDLIB_ROOT:
        return dict.fromkeys(paths, STDLIB_PROVIDER)
    if root == PURELIB_ROOT:
        return _distribution_providers(root_path, paths)
    absolute = {str(root_path / rel): rel for rel in paths}
    return {absolute[path]: package for path, package in debian_packages(list(absolute)).items()}


def debian_packages(paths: Sequence[str]) -> dict[str, str]:
    """Map absolute paths to the Debian package that ships them, via batched ``dpkg -S``."""
    found: dict[str, str] = {}
    for start in range(0, len(paths), _DPKG_BATCH):
        batch = paths[start : start + _DPKG_BATCH]
        try:
            # dpkg exits 1 when some path is not from a package; the others are still printed.
            result = subprocess.run(["dpkg", "-S", *batch], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            logger.warning("dpkg not found: system files get provider %r", UNKNOWN_PROVIDER)
            return found
        for line in result.stdout.splitlines():
            if line.startswith("diversion ") or ": " not in line:
                continue
            packages, path = line.split(": ", 1)
            # "pkg:amd64, other" -> "pkg": the first package, without its architecture
            found[path.strip()] = packages.split(",")[0].strip().split(":")[0]
    missing = [path for path in paths if path not in found]
    if missing:
        logger.warning("%d file(s) belong to no Debian package, e.g. %s", len(missing), missing[0])
    return found


def _distribution_providers(root_path: Path, paths: Sequence[str]) -> dict[str, str]:
    """Each site-packages file's distribution name, from the installed RECORD files."""
    from importlib import metadata

    wanted = set(paths)
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(root_path)]):
        name = dist.metadata["Name"] or PIP_PROVIDER
        for file in dist.files or ():
            rel = PurePosixPath(file).as_posix()
            if rel in wanted:
                found[rel] = name
    return {rel: found.get(rel, PIP_PROVIDER) for rel in paths}


# --- reading -------------------------------------------------------------------------------


def read_manifest(name: str, manifest_dir: Path | None = None, refreeze: str | None = None) -> Manifest:
    """Parse ``<manifest_dir>/<name>.json``; ``refreeze`` is the command that rewrites it, which
    error messages give (default: ``freeze <name>``).

    Raises:
        DatasetSourceError: the manifest is missing or malformed; the message gives the freeze command.
    """
    refreeze = refreeze or freeze_command(name)
    path = manifest_path(name, manifest_dir)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise DatasetSourceError(
            f"dataset {name!r} has no manifest at {path}; freeze one with: {refreeze}"
        ) from None
    try:
        raw = json.loads(raw_bytes)
        files = tuple(
            FileEntry(str(row["path"]), str(row["sha256"]), int(row["size"]), str(row["provider"]))
            for row in raw["files"]
        )
        manifest = Manifest(
            dataset=str(raw["dataset"]),
            root=str(raw["root"]),
            python_version=str(raw.get("python_version", "")),
            scan_settings=dict(raw["scan_settings"]),
            files=files,
            sha256=sha256_bytes(raw_bytes),
            path=path,
            refreeze=refreeze,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetSourceError(
            f"manifest {path} is malformed ({error!r}); refreeze with: {refreeze}"
        ) from error
    if manifest.dataset != name:
        raise DatasetSourceError(f"manifest {path} is for dataset {manifest.dataset!r}, not {name!r}")
    for entry in files:
        pure = PurePosixPath(entry.path)
        if pure.is_absolute() or ".." in pure.parts:
            raise DatasetSourceError(f"manifest {path} lists {entry.path!r}, which is not inside its root")
    return manifest


def read_verified(manifest: Manifest, paths: Iterable[str] | None = None) -> dict[str, bytes]:
    """The bytes of the listed files (all, or ``paths``), each checked against its sha256.

    Raises:
        DatasetSourceError: any file is missing or changed; the message names the first few and
            how to obtain them.
    """
    paths = None if paths is None else list(paths)
    entries = {entry.path: entry for entry in manifest.files}
    selected = list(manifest.files) if paths is None else [entries[path] for path in paths if path in entries]
    unlisted = [] if paths is None else [path for path in paths if path not in entries]
    if unlisted:
        raise DatasetSourceError(
            f"dataset {manifest.dataset!r}: {unlisted[:_SHOW_FIRST]} are not in {manifest.path}; "
            f"refreeze with: {manifest.refreeze}"
        )
    root_path = manifest.root_path
    contents: dict[str, bytes] = {}
    missing: list[FileEntry] = []
    changed: list[FileEntry] = []
    for entry in selected:
        try:
            data = (root_path / entry.path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            missing.append(entry)
            continue
        if len(data) != entry.size_bytes or sha256_bytes(data) != entry.sha256:
            changed.append(entry)
            continue
        contents[entry.path] = data
    if missing or changed:
        raise DatasetSourceError(_mismatch_message(manifest, len(selected), missing, changed))
    return contents


def _mismatch_message(
    manifest: Manifest, n_checked: int, missing: list[FileEntry], changed: list[FileEntry]
) -> str:
    name = manifest.dataset
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing")
    if changed:
        problems.append(f"{len(changed)} changed")
    lines = [
        f"dataset {name!r}: of {n_checked} file(s) listed in {manifest.path} under {manifest.root_path}, "
        + " and ".join(problems)
        + "."
    ]
    for label, group in (("missing", missing), ("changed", changed)):
        if group:
            shown = ", ".join(f"{e.path} ({e.provider})" for e in group[:_SHOW_FIRST])
            more = f" and {len(group) - _SHOW_FIRST} more" if len(group) > _SHOW_FIRST else ""
            lines.append(f"  {label}: {shown}{more}")
    providers = sorted({entry.provider for entry in missing + changed})
    if manifest.root == STDLIB_ROOT:
        lines.append(
            f"These are files of the CPython {manifest.python_version} standard library; this interpreter is "
            f"{platform.python_version()}. Run with Python {manifest.python_version}."
        )
    elif manifest.root == PURELIB_ROOT:
        lines.append(
            f"These come from the Python distributions {', '.join(providers)}; install the pinned set with: "
            "pip install -r requirements.txt"
        )
    elif LOCAL_PROVIDER in providers:
        lines.append(
            f"These are your own files under {manifest.root_path}: restore them, or accept the change."
        )
    else:
        debian = [p for p in providers if p != UNKNOWN_PROVIDER]
        if debian:
            lines.append(f"To obtain them: apt-get install {' '.join(debian)}")
    lines.append(f"If the change is intended, refreeze with: {manifest.refreeze}")
    return "\n".join(lines)


def debian_providers_of(manifest: Manifest) -> set[str]:
    """Debian packages a manifest's files come from (none for the stdlib and site-packages)."""
    if manifest.root in (STDLIB_ROOT, PURELIB_ROOT):
        return set()
    return {
        entry.provider for entry in manifest.files if entry.provider not in (UNKNOWN_PROVIDER, LOCAL_PROVIDER)
    }

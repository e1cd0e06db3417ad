"""Manifests pin the source files: a changed, missing or unlisted file stops the load with advice."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from green_deploy.errors import DatasetSourceError
from green_deploy.zoo.data import freeze_manifest, load_dataset, required_debian_packages
from green_deploy.zoo.data.__main__ import main
from green_deploy.zoo.data.manifest import default_manifest_dir, read_manifest

SMALL_FORTUNES = {"max_per_class": 40}


def _copy_manifest(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(default_manifest_dir() / f"{name}.json", tmp_path / f"{name}.json"))


def _edit_first_file(manifest: Path, **changes: object) -> str:
    """Rewrite the first file entry of a manifest; returns that entry's original path."""
    raw = json.loads(manifest.read_text())
    original = raw["files"][0]["path"]
    raw["files"][0].update(changes)
    manifest.write_text(json.dumps(raw))
    return original


def test_every_committed_manifest_is_compact_and_parses() -> None:
    paths = sorted(default_manifest_dir().glob("*.json"))
    assert {p.stem for p in paths} >= {"fashion_mnist", "fortunes", "gettext_langid", "stdlib_bytes"}
    for path in paths:
        manifest = read_manifest(path.stem)
        assert manifest.files, path
        assert path.stat().st_size < 1_000_000, path
        assert all(len(entry.sha256) == 64 for entry in manifest.files)


def test_changed_sha256_names_the_file_and_the_package(tmp_path: Path) -> None:
    changed = _edit_first_file(_copy_manifest("fortunes", tmp_path), sha256="0" * 64)
    with pytest.raises(DatasetSourceError) as raised:
        load_dataset("fortunes", SMALL_FORTUNES, manifest_dir=tmp_path)
    message = str(raised.value)
    assert "1 changed" in message
    assert changed in message
    assert "apt-get install fortunes" in message
    assert "python -m green_deploy.zoo.data freeze fortunes" in message


def test_missing_file_names_the_file_and_the_python_version(tmp_path: Path) -> None:
    manifest = _copy_manifest("stdlib_bytes", tmp_path)
    _edit_first_file(manifest, path="no_such_module_anywhere.py")
    with pytest.raises(DatasetSourceError) as raised:
        load_dataset("stdlib_bytes", manifest_dir=tmp_path)
    message = str(raised.value)
    assert "1 missing" in message
    assert "no_such_module_anywhere.py" in message
    assert "standard library" in message


def test_missing_manifest_gives_the_freeze_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetSourceError, match="python -m green_deploy.zoo.data freeze fortunes"):
        load_dataset("fortunes", manifest_dir=tmp_path)


def test_malformed_manifest_is_a_dataset_source_error(tmp_path: Path) -> None:
    (tmp_path / "fortunes.json").write_text("{not json")
    with pytest.raises(DatasetSourceError, match="malformed"):
        load_dataset("fortunes", manifest_dir=tmp_path)


def test_manifest_sha256_is_the_hash_of_the_manifest_file() -> None:
    dataset = load_dataset("fortunes", SMALL_FORTUNES)
    expected = hashlib.sha256((default_manifest_dir() / "fortunes.json").read_bytes()).hexdigest()
    assert dataset.manifest_sha256 == expected
    assert dataset.source


def test_settings_outside_the_frozen_set_ask_for_a_refreeze() -> None:
    with pytest.raises(DatasetSourceError, match="refreeze|Refreeze"):
        load_dataset("fortunes", {"categories": ["cookie", "zippy"]})
    with pytest.raises(DatasetSourceError, match="candidates_train_per_language"):
        load_dataset("code_languages", {"max_train_per_language": 100_000})


def test_freeze_then_load_a_subset_matches_the_committed_manifest(tmp_path: Path) -> None:
    settings = {"categories": ["cookie", "science"], "max_per_class": 50}
    path = freeze_manifest("fortunes", {"categories": ["cookie", "science"]}, manifest_dir=tmp_path)
    frozen = read_manifest("fortunes", tmp_path)
    assert [entry.path for entry in frozen.files] == ["cookie", "science"]
    committed = {entry.path: entry.sha256 for entry in read_manifest("fortunes").files}
    assert all(committed[entry.path] == entry.sha256 for entry in frozen.files)
    if shutil.which("dpkg"):
        assert {entry.provider for entry in frozen.files} == {"fortunes"}
        assert required_debian_packages(tmp_path) == ["fortunes"]
    from_tmp = load_dataset("fortunes", settings, manifest_dir=path.parent)
    from_committed = load_dataset("fortunes", settings)
    assert from_tmp.test.x == from_committed.test.x


def test_required_debian_packages_cover_the_system_datasets() -> None:
    packages = required_debian_packages()
    assert packages == sorted(packages)
    assert {"dataset-fashion-mnist", "fortunes", "iso-codes"} <= set(packages)
    assert "python-stdlib" not in packages


def test_cli_lists_packages_and_checks_a_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["debian-packages"]) == 0
    assert "fortunes" in capsys.readouterr().out.split()
    assert main(["check", "fortunes", "--settings", json.dumps(SMALL_FORTUNES)]) == 0
    assert capsys.readouterr().out.startswith("fortunes: train ")
    assert main(["check", "fortunes", "--settings", '{"bogus": 1}']) == 1
    assert "bogus" in capsys.readouterr().err

"""A user's own files as a zoo dataset: every format loads, splits are deterministic and
stratified, the manifest is frozen on the first load, and each bad input says what to fix."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from green_deploy.errors import ConfigError, DatasetSourceError, GreenDeployError
from green_deploy.zoo.data import RawDataset, load_dataset, required_debian_packages, system_datasets
from green_deploy.zoo.data.__main__ import main
from green_deploy.zoo.data.files import split_counts
from green_deploy.zoo.data.manifest import read_manifest

CLASSES = ("neg", "neutral", "pos")
PER_CLASS = 20


def _rows(n_per_class: int = PER_CLASS, classes: tuple[str, ...] = CLASSES) -> list[dict[str, Any]]:
    return [
        {"review": f"{label} review number {i}", "sentiment": label}
        for label in classes
        for i in range(n_per_class)
    ]


def _csv(tmp_path: Path, rows: list[dict[str, Any]] | None = None, name: str = "reviews.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(_rows() if rows is None else rows).to_csv(path, index=False)
    return path


def _load(path: Path | str, manifests: Path, **options: Any) -> RawDataset:
    settings = {"path": str(path), "text_column": "review", "label_column": "sentiment", **options}
    return load_dataset("files", settings, manifest_dir=manifests)


def _labels(dataset: RawDataset, split: str) -> list[str]:
    y = getattr(dataset, split).y
    return [dataset.classes[i] for i in y]


def _image_folder(folder: Path, classes: dict[str, int], suffix: str = ".png") -> Path:
    for c, (label, n) in enumerate(classes.items()):
        (folder / label).mkdir(parents=True)
        for i in range(n):
            rgb = np.full((6, 9, 3), (40 * c + i, 100, 200), dtype=np.uint8)
            Image.fromarray(rgb).save(folder / label / f"{i}{suffix}")
    return folder


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    return tmp_path / "manifests"


# --- each format -----------------------------------------------------------------------------


def test_csv_loads_stratified_splits_of_string_classes(tmp_path: Path, manifests: Path) -> None:
    dataset = _load(_csv(tmp_path), manifests)
    assert dataset.name == "files"
    assert dataset.classes == CLASSES
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (42, 6, 12)
    for split, per_class in (("train", 14), ("val", 2), ("test", 4)):
        assert sorted(_labels(dataset, split)) == sorted(CLASSES * per_class)
        assert getattr(dataset, split).y.dtype == np.int64
    texts = [text for split in (dataset.train, dataset.val, dataset.test) for text in split.x]
    assert sorted(texts) == sorted(row["review"] for row in _rows())
    for split in (dataset.train, dataset.val, dataset.test):
        assert all(
            text.startswith(dataset.classes[label]) for text, label in zip(split.x, split.y, strict=True)
        )
    assert "reviews.csv" in dataset.source and dataset.manifest_sha256


def test_classes_set_the_model_output_order_and_name_unknown_labels(tmp_path: Path, manifests: Path) -> None:
    order = tuple(reversed(CLASSES)) + ("unseen",)  # a model's head may know a class the data lacks
    dataset = _load(_csv(tmp_path), manifests, classes=list(order))
    assert dataset.classes == order
    for split in (dataset.train, dataset.val, dataset.test):
        assert all(text.startswith(order[label]) for text, label in zip(split.x, split.y, strict=True))
    with pytest.raises(ConfigError, match=rf"label\(s\) \['{CLASSES[0]}'\] that classes .* does not name"):
        _load(_csv(tmp_path), tmp_path / "other", classes=list(CLASSES[1:]) + ["unseen"])
    with pytest.raises(ConfigError, match="classes must name each of at least two labels once"):
        _load(_csv(tmp_path), manifests, classes=[CLASSES[0], CLASSES[0]])


def test_jsonl_and_parquet_give_the_same_splits_as_csv(tmp_path: Path, manifests: Path) -> None:
    frame = pd.DataFrame(_rows())
    frame.to_json(tmp_path / "reviews.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "reviews.parquet")
    from_csv = _load(_csv(tmp_path), manifests)
    for name in ("reviews.jsonl", "reviews.parquet"):
        other = _load(tmp_path / name, manifests)
        assert other.classes == from_csv.classes
        for split in ("train", "val", "test"):
            assert getattr(other, split).x == getattr(from_csv, split).x
            assert np.array_equal(getattr(other, split).y, getattr(from_csv, split).y)
    assert len(list(manifests.glob("files_*.json"))) == 3  # one manifest per path


def test_integer_labels_become_class_names(tmp_path: Path, manifests: Path) -> None:
    rows = [{"text": f"t{i}", "label": i % 2, "note": None} for i in range(12)]
    pd.DataFrame(rows).to_parquet(tmp_path / "ints.parquet")
    dataset = load_dataset("files", {"path": str(tmp_path / "ints.parquet")}, manifest_dir=manifests)
    assert dataset.classes == ("0", "1")


def test_rows_without_text_or_label_are_dropped(tmp_path: Path, manifests: Path) -> None:
    rows = [*_rows(), {"review": "", "sentiment": "pos"}, {"review": "NA", "sentiment": "neg"}]
    dataset = _load(_csv(tmp_path, rows), manifests)
    texts = [text for split in (dataset.train, dataset.val, dataset.test) for text in split.x]
    assert len(texts) == len(CLASSES) * PER_CLASS + 1 and "NA" in texts  # "NA" is a text, not a gap


def test_relative_path_resolves_against_the_working_directory(
    tmp_path: Path, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    _csv(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    dataset = _load("data/reviews.csv", manifests)
    assert str(tmp_path / "data" / "reviews.csv") in dataset.source
    assert read_manifest(next(manifests.glob("*.json")).stem, manifests).root == str(tmp_path / "data")


def test_image_folder_gives_uint8_arrays_like_fashion_mnist(tmp_path: Path, manifests: Path) -> None:
    folder = _image_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    for suffix in (".jpg", ".bmp", ".gif"):
        Image.new("RGB", (7, 5), (9, 9, 9)).save(folder / "dog" / f"extra{suffix}")
    (folder / "dog" / "notes.txt").write_text("not an image")
    gray = load_dataset("files", {"path": str(folder)}, manifest_dir=manifests)
    assert gray.classes == ("cat", "dog")
    assert (len(gray.train), len(gray.val), len(gray.test)) == (8, 2, 3)  # cat 3/1/1, dog 5/1/2
    assert gray.train.x.dtype == np.uint8 and gray.train.x.shape == (8, 28, 28)
    assert sorted(_labels(gray, "val")) == ["cat", "dog"]
    rgb = load_dataset(
        "files", {"path": str(folder), "grayscale": False, "image_size": 8}, manifest_dir=manifests
    )
    assert rgb.test.x.shape == (3, 8, 8, 3) and rgb.test.x.dtype == np.uint8
    assert np.array_equal(rgb.test.y, gray.test.y)
    assert set(np.unique(rgb.train.x[..., 2]).tolist()) <= {200, 9}  # channels stay in RGB order
    assert len(read_manifest(next(manifests.glob("files_pets_*.json")).stem, manifests).files) == 13


# --- splits ----------------------------------------------------------------------------------


def test_split_counts_put_every_class_of_three_in_every_split() -> None:
    assert split_counts(20, 0.1, 0.2) == (14, 2, 4)
    assert split_counts(3, 0.1, 0.2) == (1, 1, 1)
    assert split_counts(2, 0.1, 0.2) == (2, 0, 0)
    assert split_counts(1, 0.1, 0.2) == (1, 0, 0)
    assert split_counts(10, 0.45, 0.45) == (1, 5, 4)


def test_splits_are_deterministic_and_follow_the_seed(tmp_path: Path, manifests: Path) -> None:
    path = _csv(tmp_path)
    first, again = _load(path, manifests), _load(path, manifests)
    assert first.train.x == again.train.x and first.test.x == again.test.x
    reseeded = _load(path, manifests, seed=1)
    assert set(reseeded.test.x) != set(first.test.x)
    assert sorted(_labels(reseeded, "test")) == sorted(_labels(first, "test"))  # still stratified
    wider = _load(path, manifests, val_fraction=0.2, test_fraction=0.3)
    assert (len(wider.train), len(wider.val), len(wider.test)) == (30, 12, 18)


def test_split_column_decides_the_split(tmp_path: Path, manifests: Path) -> None:
    rows = _rows(6)
    for i, row in enumerate(rows):
        row["part"] = ("Train", "train", "val", "validation", "test ", "TEST")[i % 6]
    dataset = _load(_csv(tmp_path, rows), manifests, split_column="part")
    for split, wanted in (
        ("train", ("Train", "train")),
        ("val", ("val", "validation")),
        ("test", ("test ", "TEST")),
    ):
        expected = sorted(row["review"] for row in rows if row["part"] in wanted)
        assert sorted(getattr(dataset, split).x) == expected


def test_caps_are_respected_and_pick_a_stable_subset(tmp_path: Path, manifests: Path) -> None:
    path = _csv(tmp_path)
    capped = _load(path, manifests, max_train=10, max_val=3, max_test=5)
    assert (len(capped.train), len(capped.val), len(capped.test)) == (10, 3, 5)
    assert len(capped.train.y) == 10
    whole = _load(path, manifests)
    assert set(capped.train.x) <= set(whole.train.x) and set(capped.test.x) <= set(whole.test.x)
    assert _load(path, manifests, max_train=10).train.x == capped.train.x


# --- manifests -------------------------------------------------------------------------------


def test_first_load_freezes_the_manifest_and_later_loads_reuse_it(
    tmp_path: Path, manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _csv(tmp_path)
    with caplog.at_level(logging.INFO, logger="green_deploy.zoo.data"):
        first = _load(path, manifests)
    assert any(record.getMessage().startswith("froze files_reviews_csv_") for record in caplog.records)
    (frozen,) = manifests.glob("files_reviews_csv_*.json")
    manifest = read_manifest(frozen.stem, manifests)
    assert manifest.root == str(tmp_path)
    assert [(e.path, e.provider) for e in manifest.files] == [("reviews.csv", "local")]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="green_deploy.zoo.data"):
        second = _load(path, manifests)
    assert not any("froze" in record.getMessage() for record in caplog.records)
    assert second.manifest_sha256 == first.manifest_sha256
    assert required_debian_packages(manifests) == []


def test_a_changed_file_is_refused_with_the_command_that_refreezes_it(
    tmp_path: Path, manifests: Path
) -> None:
    path = _csv(tmp_path)
    _load(path, manifests)
    _csv(tmp_path, [*_rows(), {"review": "a new one", "sentiment": "pos"}])
    with pytest.raises(DatasetSourceError) as raised:
        _load(path, manifests)
    message = str(raised.value)
    assert "1 changed" in message and "reviews.csv" in message
    command = message.rsplit("refreeze with: ", maxsplit=1)[-1]
    assert command.startswith("python -m green_deploy.zoo.data --manifest-dir ")
    assert f'"path": "{path}"' in command and " freeze files --settings " in command
    assert main(shlex.split(command)[3:]) == 0  # the command as given refreezes
    refrozen = _load(path, manifests)
    assert "a new one" in [*refrozen.train.x, *refrozen.val.x, *refrozen.test.x]


def test_a_missing_image_after_the_freeze_is_named(tmp_path: Path, manifests: Path) -> None:
    folder = _image_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    load_dataset("files", {"path": str(folder)}, manifest_dir=manifests)
    (folder / "dog" / "2.png").unlink()
    with pytest.raises(DatasetSourceError, match=r"(?s)1 missing.*dog/2\.png.*freeze files --settings"):
        load_dataset("files", {"path": str(folder)}, manifest_dir=manifests)


def test_settings_changed_after_the_freeze_are_checked_again(tmp_path: Path, manifests: Path) -> None:
    folder = _image_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    load_dataset("files", {"path": str(folder)}, manifest_dir=manifests)
    with pytest.raises(ConfigError, match="an image folder is split by val_fraction and test_fraction"):
        load_dataset("files", {"path": str(folder), "split_column": "part"}, manifest_dir=manifests)


def test_cli_freezes_own_data_and_all_means_the_system_datasets(
    tmp_path: Path, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _csv(tmp_path)
    settings = json.dumps({"path": str(path)})
    assert main(["--manifest-dir", str(manifests), "freeze", "files", "--settings", settings]) == 0
    assert "files: wrote " in capsys.readouterr().out
    assert len(list(manifests.glob("files_reviews_csv_*.json"))) == 1
    assert "files" not in system_datasets() and "fortunes" in system_datasets()
    assert main(["--manifest-dir", str(manifests), "freeze", "files"]) == 1
    assert "path is required" in capsys.readouterr().err


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({}, "path is required"),
        ({"path": "x.csv", "format": "xlsx"}, "format must be one of auto, csv, jsonl, parquet, imagefolder"),
        ({"path": "x.csv", "text_column": "t", "label_column": "t"}, "must be different columns"),
        ({"path": "x.csv", "val_fraction": 0.0}, "val_fraction must be in (0, 1)"),
        ({"path": "x.csv", "max_train": 0}, "max_train must be at least 1"),
        ({"path": "x.csv", "image_size": 2}, "image_size must be between"),
        ({"path": "x.csv", "grayscale": "no"}, "must be true or false"),
        ({"path": "x.csv", "colour": True}, "unknown setting(s) ['colour']"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(
    settings: dict[str, Any], fragment: str, manifests: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_dataset("files", settings, manifest_dir=manifests)
    assert fragment in str(raised.value)


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[dict[str, Any], type[GreenDeployError], str]]:
    """case -> (settings, error, fragment of its message)."""
    good = _csv(tmp_path)
    one_class = _csv(tmp_path, _rows(classes=("pos",)), "one_class.csv")
    tiny = _csv(tmp_path, _rows(2, ("neg", "pos")), "tiny.csv")
    parts = [{**row, "part": ("train", "dev")[i % 2]} for i, row in enumerate(_rows(4))]
    bad_split = _csv(tmp_path, parts, "bad_split.csv")
    no_test = _csv(tmp_path, [{**row, "part": "train"} for row in _rows(4)], "no_test.csv")
    columns = {"text_column": "review", "label_column": "sentiment"}
    one_folder = _image_folder(tmp_path / "one_folder", {"cat": 6})
    broken = _image_folder(tmp_path / "broken", {"cat": 4, "dog": 4})
    (broken / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return {
        "missing path": ({"path": str(tmp_path / "nope.csv")}, DatasetSourceError, "does not exist"),
        "unknown suffix": (
            {"path": str(_write(tmp_path, "data.txt", "a,b\n"))},
            ConfigError,
            "cannot tell the format of data.txt",
        ),
        "folder read as csv": ({"path": str(one_folder), "format": "csv"}, ConfigError, "is a folder"),
        "absent text column": (
            {"path": str(good), "text_column": "body", "label_column": "sentiment"},
            DatasetSourceError,
            "text_column 'body' is not a column of",
        ),
        "absent label column": (
            {"path": str(good), "text_column": "review"},
            DatasetSourceError,
            "label_column 'label' is not a column of",
        ),
        "empty file": ({"path": str(_write(tmp_path, "empty.csv", b""))}, DatasetSourceError, "is empty"),
        "header only": (
            {"path": str(_write(tmp_path, "head.csv", "text,label\n"))},
            DatasetSourceError,
            "no rows",
        ),
        "empty jsonl": ({"path": str(_write(tmp_path, "e.jsonl", "\n\n"))}, DatasetSourceError, "is empty"),
        "bad jsonl line": (
            {"path": str(_write(tmp_path, "bad.jsonl", '{"text": "a", "label": 1}\n{oops\n'))},
            DatasetSourceError,
            "line 2 of",
        ),
        "jsonl not objects": (
            {"path": str(_write(tmp_path, "list.jsonl", "[1, 2]\n"))},
            DatasetSourceError,
            "is a JSON list, not an object",
        ),
        "corrupt parquet": (
            {"path": str(_write(tmp_path, "bad.parquet", b"PAR1 definitely not parquet"))},
            DatasetSourceError,
            "cannot be read as parquet",
        ),
        "not utf-8": (
            {"path": str(_write(tmp_path, "latin.csv", "text,label\ncaf\xe9,a\n".encode("latin-1")))},
            DatasetSourceError,
            "is not UTF-8 text",
        ),
        "single class": (
            {"path": str(one_class), **columns},
            DatasetSourceError,
            "holds a single class 'pos'",
        ),
        "too small": ({"path": str(tiny), **columns}, DatasetSourceError, "too small to split: 4 examples"),
        "bad split values": (
            {"path": str(bad_split), **columns, "split_column": "part"},
            DatasetSourceError,
            "'dev' (6 rows)",
        ),
        "absent split column": (
            {"path": str(good), **columns, "split_column": "part"},
            DatasetSourceError,
            "split_column 'part' is not a column of",
        ),
        "split column leaves a split empty": (
            {"path": str(no_test), **columns, "split_column": "part"},
            DatasetSourceError,
            "val 0, test 0 (split_column 'part')",
        ),
        "one class folder": (
            {"path": str(one_folder)},
            DatasetSourceError,
            "1 class folder(s) with images ['cat']",
        ),
        "undecodable image": ({"path": str(broken)}, DatasetSourceError, "image dog/1.png in"),
    }


def test_every_bad_input_is_a_clear_error_and_leaves_no_manifest(tmp_path: Path, manifests: Path) -> None:
    failures = []
    for case, (settings, error, fragment) in _bad_inputs(tmp_path).items():
        try:
            load_dataset("files", settings, manifest_dir=manifests)
        except error as raised:
            if fragment not in str(raised):
                failures.append(f"{case}: {fragment!r} not in {str(raised)!r}")
        else:
            failures.append(f"{case}: no {error.__name__}")
    assert not failures, "\n".join(failures)
    assert not list(manifests.glob("*.json"))  # a load that fails does not pin the bad data


def test_errors_name_the_columns_there_are(tmp_path: Path, manifests: Path) -> None:
    with pytest.raises(DatasetSourceError) as raised:
        load_dataset("files", {"path": str(_csv(tmp_path))}, manifest_dir=manifests)
    assert "its columns: ['review', 'sentiment']" in str(raised.value)
    assert "Set text_column to one of them" in str(raised.value)

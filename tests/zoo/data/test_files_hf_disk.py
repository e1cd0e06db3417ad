"""A folder written by Hugging Face datasets' save_to_disk as a files dataset: a DatasetDict keeps
its splits, a Dataset is split like a table, a ClassLabel gives the class order, Image columns
give the image folder's arrays, the manifest pins the saved files, and bad input says what to fix."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from green_deploy.errors import ConfigError, DatasetSourceError, GreenDeployError
from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.data.manifest import read_manifest

NAMES = ("pos", "neg", "neutral")  # a ClassLabel's order, deliberately not sorted
PER_CLASS = 20
SPLITS = ("train", "val", "test")


def _rows(n_per_class: int = PER_CLASS, tag: str = "") -> dict[str, list[Any]]:
    rows = [(f"{name} {tag}review {i}", c) for c, name in enumerate(NAMES) for i in range(n_per_class)]
    return {"review": [text for text, _ in rows], "sentiment": [label for _, label in rows]}


def _text_dataset(n_per_class: int = PER_CLASS, tag: str = "") -> datasets.Dataset:
    features = datasets.Features(
        {"review": datasets.Value("string"), "sentiment": datasets.ClassLabel(names=list(NAMES))}
    )
    return datasets.Dataset.from_dict(_rows(n_per_class, tag), features=features)


def _save(data: datasets.Dataset | datasets.DatasetDict, folder: Path) -> Path:
    data.save_to_disk(str(folder))
    return folder


def _load(path: Path, manifests: Path, **options: Any) -> RawDataset:
    settings = {"path": str(path), "text_column": "review", "label_column": "sentiment", **options}
    return load_dataset("files", settings, manifest_dir=manifests)


def _texts(dataset: RawDataset, split: str) -> list[str]:
    return list(getattr(dataset, split).x)


def _labels_match_texts(dataset: RawDataset) -> bool:
    return all(
        text.startswith(f"{dataset.classes[label]} ")
        for split in SPLITS
        for text, label in zip(getattr(dataset, split).x, getattr(dataset, split).y, strict=True)
    )


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    return tmp_path / "manifests"


# --- a single Dataset --------------------------------------------------------------------------


def test_a_saved_dataset_is_split_like_the_same_rows_in_a_csv(tmp_path: Path, manifests: Path) -> None:
    saved = _load(_save(_text_dataset(), tmp_path / "reviews"), manifests)
    assert saved.classes == NAMES  # the ClassLabel's order, not sorted
    assert saved.extra["format"] == "hf_disk"
    assert (len(saved.train), len(saved.val), len(saved.test)) == (42, 6, 12)
    assert _labels_match_texts(saved)
    rows = _rows()
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": rows["review"], "sentiment": [NAMES[i] for i in rows["sentiment"]]}).to_csv(csv)
    from_csv = _load(csv, manifests, classes=list(NAMES))
    for split in SPLITS:
        assert _texts(saved, split) == _texts(from_csv, split)
        assert np.array_equal(getattr(saved, split).y, getattr(from_csv, split).y)


def test_a_saved_dataset_can_name_its_splits_in_a_column(tmp_path: Path, manifests: Path) -> None:
    data = _text_dataset(6)
    data = data.add_column(
        "part", [("train", "train", "train", "validation", "test", "test")[i % 6] for i in range(18)]
    )
    dataset = _load(_save(data, tmp_path / "parts"), manifests, split_column="part")
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (9, 3, 6)
    assert all(text.endswith((" 3",)) for text in _texts(dataset, "val"))


def test_classes_may_reorder_a_classlabel_but_must_name_all_of_it(tmp_path: Path, manifests: Path) -> None:
    folder = _save(_text_dataset(), tmp_path / "reviews")
    order = ("neutral", "pos", "other", "neg")  # a model's head order, with a class the data lacks
    dataset = _load(folder, manifests, classes=list(order))
    assert dataset.classes == order
    assert _labels_match_texts(dataset)
    with pytest.raises(ConfigError) as raised:
        _load(folder, tmp_path / "other", classes=["pos", "neg", "other"])
    message = str(raised.value)
    assert "is a ClassLabel naming ['pos', 'neg', 'neutral']" in message
    assert "does not name ['neutral']" in message and "remove classes" in message


# --- a DatasetDict -----------------------------------------------------------------------------


def test_a_datasetdict_keeps_its_train_validation_and_test(tmp_path: Path, manifests: Path) -> None:
    parts = {
        "train": _text_dataset(8, "a "),
        "validation": _text_dataset(3, "b "),
        "test": _text_dataset(4, "c "),
    }
    dataset = _load(_save(datasets.DatasetDict(parts), tmp_path / "dict"), manifests)
    assert dataset.classes == NAMES
    for split, part in zip(SPLITS, parts.values(), strict=True):
        assert sorted(_texts(dataset, split)) == sorted(part["review"])
    assert _labels_match_texts(dataset)
    assert dataset.extra["split_by"] == "the DatasetDict's splits ['train', 'validation', 'test']"


def test_a_split_the_datasetdict_lacks_is_cut_from_train_per_class(
    tmp_path: Path, manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unlabelled = datasets.Dataset.from_dict(
        {"review": ["no label"] * 4, "sentiment": [-1] * 4}, features=_text_dataset(1).features
    )
    parts = {"train": _text_dataset(10, "a "), "test": _text_dataset(4, "c "), "unsupervised": unlabelled}
    folder = _save(datasets.DatasetDict(parts), tmp_path / "dict")
    with caplog.at_level(logging.WARNING, logger="green_deploy.zoo.data.files"):
        dataset = _load(folder, manifests)
    assert any("['unsupervised']" in record.getMessage() for record in caplog.records)
    assert sorted(_texts(dataset, "test")) == sorted(parts["test"]["review"])
    assert sorted(_texts(dataset, "train") + _texts(dataset, "val")) == sorted(parts["train"]["review"])
    assert sorted(dataset.classes[i] for i in dataset.val.y) == sorted(NAMES)  # 10 per class: 1 each
    assert "val cut from train by val_fraction 0.1" in dataset.extra["split_by"]


# --- images ------------------------------------------------------------------------------------


def _colour(c: int, i: int) -> tuple[int, int, int]:
    return (40 * c + i, 100, 200)  # red tells the class (red // 40) and the row


def _image_dataset() -> datasets.Dataset:
    images = [np.full((6, 9, 3), _colour(c, i), dtype=np.uint8) for c in range(2) for i in range(5)]
    features = datasets.Features(
        {"picture": datasets.Image(), "label": datasets.ClassLabel(names=["dog", "cat"])}
    )
    return datasets.Dataset.from_dict({"picture": images, "label": [0] * 5 + [1] * 5}, features=features)


def test_an_image_column_gives_the_image_folders_arrays(tmp_path: Path, manifests: Path) -> None:
    folder = _save(_image_dataset(), tmp_path / "pets")
    gray = load_dataset("files", {"path": str(folder)}, manifest_dir=manifests)  # the Image column found
    assert gray.classes == ("dog", "cat")
    assert (len(gray.train), len(gray.val), len(gray.test)) == (6, 2, 2)
    assert gray.train.x.dtype == np.uint8 and gray.train.x.shape == (6, 28, 28)
    rgb = load_dataset(
        "files",
        {"path": str(folder), "image_column": "picture", "grayscale": False, "image_size": 8},
        manifest_dir=manifests,
    )
    assert rgb.test.x.shape == (2, 8, 8, 3) and rgb.test.x.dtype == np.uint8
    for split in SPLITS:
        x, y = getattr(rgb, split).x, getattr(rgb, split).y
        assert np.array_equal(y, getattr(gray, split).y)
        assert (x[..., 1:] == (100, 200)).all()  # channels stay in RGB order
        assert [rgb.classes[i] for i in y] == [("dog", "cat")[red // 40] for red in x[:, 0, 0, 0]]
    # The image of row 0 becomes the array an image folder gives for the same picture.
    ((split, index),) = [
        (s, k) for s in SPLITS for k, red in enumerate(getattr(rgb, s).x[:, 0, 0, 0]) if red == 0
    ]
    for label in ("cat", "dog"):
        (tmp_path / "same" / label).mkdir(parents=True)
        for copy in range(3):
            Image.fromarray(np.full((6, 9, 3), _colour(0, 0), np.uint8)).save(
                tmp_path / "same" / label / f"{copy}.png"
            )
    from_folder = load_dataset("files", {"path": str(tmp_path / "same")}, manifest_dir=manifests)
    assert np.array_equal(getattr(gray, split).x[index], from_folder.train.x[0])


# --- manifests ---------------------------------------------------------------------------------


def test_the_manifest_pins_the_saved_files_and_refuses_a_changed_arrow_file(
    tmp_path: Path, manifests: Path
) -> None:
    parts = {"train": _text_dataset(8), "test": _text_dataset(4, "c ")}
    folder = _save(datasets.DatasetDict(parts), tmp_path / "dict")
    (folder / "train" / "cache-0123456789abcdef.arrow").write_bytes(
        b"left by map(); load_from_disk ignores it"
    )
    first = _load(folder, manifests)
    (frozen,) = manifests.glob("files_dict_*.json")
    manifest = read_manifest(frozen.stem, manifests)
    assert manifest.root == str(folder)
    assert sorted(entry.path for entry in manifest.files) == [
        "dataset_dict.json",
        *(
            f"{split}/{name}"
            for split in ("test", "train")
            for name in ("data-00000-of-00001.arrow", "dataset_info.json", "state.json")
        ),
    ]
    assert {entry.provider for entry in manifest.files} == {"local"}
    assert _load(folder, manifests).manifest_sha256 == first.manifest_sha256
    arrow = folder / "train" / "data-00000-of-00001.arrow"
    data = bytearray(arrow.read_bytes())
    at = data.index(b"pos review 0")
    data[at : at + 3] = b"neg"  # a relabelled row, same size
    arrow.write_bytes(bytes(data))
    with pytest.raises(DatasetSourceError) as raised:
        _load(folder, manifests)
    message = str(raised.value)
    assert "1 changed" in message and "train/data-00000-of-00001.arrow (local)" in message
    assert (
        "These are your own files" in message and "refreeze with: python -m green_deploy.zoo.data" in message
    )


def test_format_hf_disk_may_be_given(tmp_path: Path, manifests: Path) -> None:
    folder = _save(_text_dataset(), tmp_path / "reviews")
    assert _load(folder, manifests, format="hf_disk").classes == NAMES


def test_only_a_saved_dataset_imports_datasets_and_its_format_imports_no_framework(tmp_path: Path) -> None:
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": ["a", "b"] * 6}).to_csv(csv, index=False)
    saved = _text_dataset()
    saved.set_format("torch")  # recorded in state.json; reading it must not import torch
    folder = _save(saved, tmp_path / "torch_format")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from green_deploy.zoo.data import load_dataset\n"
        f"manifests = Path({str(tmp_path / 'm')!r})\n"
        f"load_dataset('files', {{'path': {str(csv)!r}}}, manifest_dir=manifests)\n"
        "print('datasets' in sys.modules)\n"
        f"options = {{'path': {str(folder)!r}, 'text_column': 'review', 'label_column': 'sentiment'}}\n"
        "print(load_dataset('files', options, manifest_dir=manifests).classes)\n"
        "print('datasets' in sys.modules, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.split("\n")[:3] == ["False", str(NAMES), "True False"]


# --- bad input ---------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[dict[str, Any], type[GreenDeployError], str]]:
    """case -> (settings, error, fragment of its message)."""
    single = _save(_text_dataset(), tmp_path / "single")
    folds = _save(
        datasets.DatasetDict({"fold0": _text_dataset(4), "fold1": _text_dataset(4)}), tmp_path / "folds"
    )
    pictures = _save(_image_dataset(), tmp_path / "pictures")
    neither = tmp_path / "neither"
    (neither / "notes").mkdir(parents=True)
    (neither / "notes" / "readme.txt").write_text("not data")
    corrupt = _save(_text_dataset(), tmp_path / "corrupt")
    arrow = corrupt / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[:100])
    no_shard = _save(_text_dataset(), tmp_path / "no_shard")
    (no_shard / "data-00000-of-00001.arrow").unlink()
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["a", "b"], "sentiment": ["x", "y"]}).to_csv(csv, index=False)
    columns = {"text_column": "review", "label_column": "sentiment"}
    return {
        "neither image folder nor saved dataset": (
            {"path": str(neither)},
            DatasetSourceError,
            "is neither an image folder",
        ),
        "hf_disk on another folder": (
            {"path": str(neither), "format": "hf_disk"},
            ConfigError,
            "format hf_disk needs a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk",
        ),
        "no train split": (
            {"path": str(folds), **columns},
            DatasetSourceError,
            "has splits ['fold0', 'fold1'] and no train split; name the training split train",
        ),
        "split_column on a DatasetDict": (
            {"path": str(folds), **columns, "split_column": "part"},
            ConfigError,
            "holds a DatasetDict, whose own splits are read: remove split_column",
        ),
        "absent text column": (
            {"path": str(single), "text_column": "body", "label_column": "sentiment"},
            DatasetSourceError,
            "text_column 'body' is not a column of",
        ),
        "absent label column": (
            {"path": str(single), "text_column": "review"},
            DatasetSourceError,
            "label_column 'label' is not a column of",
        ),
        "absent image column": (
            {"path": str(pictures), "image_column": "photo"},
            DatasetSourceError,
            "image_column 'photo' is not a column of",
        ),
        "image column of text": (
            {"path": str(single), **columns, "image_column": "review"},
            DatasetSourceError,
            "image_column 'review' of",  # ... is of type Value, not Image
        ),
        "text column of images": (
            {"path": str(pictures), "text_column": "picture"},
            DatasetSourceError,
            "is of type Image, not one text per row (a Value); set image_column: picture",
        ),
        "image_column on a csv": (
            {"path": str(csv), **columns, "image_column": "review"},
            ConfigError,
            "image_column applies to a dataset saved by save_to_disk",
        ),
        "corrupt arrow file": (
            {"path": str(corrupt), **columns},
            DatasetSourceError,
            "datasets.load_from_disk cannot read",
        ),
        "missing shard": (
            {"path": str(no_shard), **columns},
            DatasetSourceError,
            "lacks ['data-00000-of-00001.arrow']",
        ),
    }


def test_every_bad_saved_dataset_is_a_clear_error_and_leaves_no_manifest(
    tmp_path: Path, manifests: Path
) -> None:
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
    assert not list(manifests.glob("*.json"))


def test_a_malformed_state_json_is_named(tmp_path: Path, manifests: Path) -> None:
    folder = _save(_text_dataset(), tmp_path / "reviews")
    (folder / "state.json").write_text(json.dumps({"_data_files": "../elsewhere.arrow"}))
    with pytest.raises(DatasetSourceError, match=r"state\.json is not what save_to_disk writes"):
        _load(folder, manifests)

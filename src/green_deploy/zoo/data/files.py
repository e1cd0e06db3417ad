"""A user's own labelled data as a zoo dataset, by configuration alone.

``path`` names a CSV, JSON Lines or Parquet file of texts and labels, an image folder with one
sub-folder per class, or a folder that Hugging Face ``datasets`` wrote with ``save_to_disk`` (a
``Dataset`` or ``DatasetDict`` of texts or images with labels, read with ``load_from_disk``).
Like the system's datasets, its files are pinned by sha256 in a manifest (root: the data's
absolute directory), here named per path so several own datasets coexist; the first load freezes
it, and a later load refuses a changed or missing file, naming the command that refreezes it.
Files added to an image folder after the freeze are not read until a refreeze.

Splits come from a ``split_column``, or a ``DatasetDict``'s train / validation / test, when the data
has them (a split the ``DatasetDict`` lacks is cut from its train), else from ``val_fraction`` and
``test_fraction`` per class (stratified: a class of 3 or more examples appears in every split),
ordered by sha1 of the example and ``seed``, so a load is the same on every machine.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from green_deploy.errors import ConfigError, DatasetSourceError
from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.settings import require, require_fractions
from green_deploy.zoo.data.splitting import SPLITS, SplitName, sha1_hex, take_in_order

if TYPE_CHECKING:
    import datasets

NAME = "files"
TABULAR_FORMATS = ("csv", "jsonl", "parquet")
IMAGE_FOLDER = "imagefolder"
HF_DISK = "hf_disk"  # a folder written by Hugging Face datasets' save_to_disk
FOLDER_FORMATS = (IMAGE_FOLDER, HF_DISK)
FORMATS = (*TABULAR_FORMATS, *FOLDER_FORMATS)
HF_DICT_FILE = "dataset_dict.json"  # a DatasetDict's: lists the splits, one sub-folder each
HF_SPLIT_FILES = ("dataset_info.json", "state.json")  # one Dataset's, beside its .arrow shards
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
SPLIT_VALUES: dict[str, SplitName] = {"train": "train", "val": "val", "validation": "val", "test": "test"}
MIN_PER_SPLIT = 2  # fewer examples leave a split that cannot calibrate or score anything
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 4, 1024
_SHOW_FIRST = 5  # values or files named in an error message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilesSettings:
    """Where the data is and how to read it.

    ``path`` is required (a default of ``""`` only so that a missing one is a ``ConfigError``).
    ``image_column`` names a saved dataset's Image column (None: its one Image column when it has
    no ``text_column``). ``image_size`` is in pixels (images become ``image_size`` x
    ``image_size``); ``max_*`` cap a split's size in examples (None = all).
    """

    path: str = ""
    format: str = "auto"
    text_column: str = "text"
    image_column: str | None = None
    label_column: str = "label"
    split_column: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    image_size: int = 28
    grayscale: bool = True
    classes: tuple[str, ...] | None = None  # the model's output order; None: the labels sorted

    def __post_init__(self) -> None:
        require(
            bool(self.path.strip()),
            NAME,
            "path is required: the CSV, JSON Lines or Parquet file, the image folder, or the folder "
            "save_to_disk wrote, to read (e.g. dataset_options: {path: data/01_raw/reviews.csv})",
        )
        require(
            self.format in ("auto", *FORMATS),
            NAME,
            f"format must be one of auto, {', '.join(FORMATS)}; got {self.format!r} "
            f"(auto tells it from the suffix, a folder being an {IMAGE_FOLDER} unless save_to_disk wrote it)",
        )
        if self.classes is not None:
            require(
                len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes),
                NAME,
                f"classes must name each of at least two labels once, in the model's output order; got {list(self.classes)}",
            )
        for key in ("text_column", "image_column", "label_column", "split_column"):
            value = getattr(self, key)
            require(value is None or bool(value.strip()), NAME, f"{key} must name a column, got {value!r}")
        examples = self.text_column if self.image_column is None else self.image_column
        columns = [c for c in (examples, self.label_column, self.split_column) if c is not None]
        require(
            len(set(columns)) == len(columns),
            NAME,
            "text_column (or image_column), label_column and split_column must be different columns, "
            f"got {columns}",
        )
        require_fractions(NAME, self.val_fraction, self.test_fraction)
        for key in ("max_train", "max_val", "max_test"):
            cap = getattr(self, key)
            require(cap is None or cap >= 1, NAME, f"{key} must be at least 1 (or null for all), got {cap}")
        require(
            MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
            NAME,
            f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {self.image_size}",
        )


@dataclass(frozen=True)
class _Example:
    """One labelled example before it is materialized: ``key`` orders and splits it (the text,
    or the image's path or row), ``item`` is what ``RawSplit.x`` holds (the text, or the key of
    the image's bytes)."""

    key: str
    label: str
    item: str
    split: SplitName | None = None


@dataclass(frozen=True)
class _Read:
    """A format's examples before splitting.

    ``what`` names where the labels come from (for messages); ``given`` the splits the data assigns
    itself (a ``split_column``: all three; a DatasetDict: those it has), described by ``given_by``;
    ``label_names`` a ClassLabel's names, in its order; ``images`` the images' bytes by item
    (None: the items are texts).
    """

    examples: list[_Example]
    what: str
    given: tuple[SplitName, ...] = ()
    given_by: str = ""
    label_names: tuple[str, ...] | None = None
    images: Mapping[str, bytes] | None = None


def absolute_path(settings: FilesSettings) -> Path:
    """``path`` made absolute against the working directory (a Kedro run's project root),
    normalized but with links kept (the manifest names the path the user gave)."""
    return Path(os.path.abspath(Path(settings.path).expanduser()))


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``save_to_disk`` wrote ``folder``, told by the files ``load_from_disk`` looks for."""
    return (folder / HF_DICT_FILE).is_file() or all((folder / name).is_file() for name in HF_SPLIT_FILES)


def resolved_format(settings: FilesSettings) -> str:
    """The format read: the explicit one, else a folder's (hf_disk or imagefolder) or the
    suffix's; ``auto`` when it cannot be told (``check_target`` says why). Never raises: error
    messages use it."""
    if settings.format != "auto":
        return settings.format
    path = absolute_path(settings)
    if path.is_dir():
        return HF_DISK if is_saved_dataset(path) else IMAGE_FOLDER
    if path.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[path.suffix.lower()]
    return IMAGE_FOLDER if not path.exists() and not path.suffix else "auto"


def check_target(settings: FilesSettings) -> tuple[Path, str]:
    """The data's absolute path and format, checked against what is on disk.

    Raises:
        DatasetSourceError: the path does not exist.
        ConfigError: the format cannot be told, or does not fit a file or a folder.
    """
    path = absolute_path(settings)
    if not path.exists():
        relative = "" if Path(settings.path).expanduser().is_absolute() else f" (read from {Path.cwd()})"
        raise DatasetSourceError(
            f"dataset {NAME!r}: path {settings.path!r} does not exist: {path}{relative}. "
            "Set path to your CSV, .jsonl or .parquet file, image folder or save_to_disk folder; a "
            "relative path is read from the working directory, the project root in a Kedro run"
        )
    fmt = resolved_format(settings)
    if path.is_dir() and fmt not in FOLDER_FORMATS:
        raise ConfigError(
            f"dataset {NAME!r}: path {path} is a folder, but format is {fmt!r}; a folder is read as "
            f"{IMAGE_FOLDER} (one sub-folder per class) or {HF_DISK} (written by save_to_disk): set format: "
            "auto, or point path at a file"
        )
    if not path.is_dir() and fmt in FOLDER_FORMATS:
        needs = "one sub-folder per class" if fmt == IMAGE_FOLDER else "the files save_to_disk wrote"
        raise ConfigError(
            f"dataset {NAME!r}: format {fmt} needs a folder with {needs}, "
            f"but {path} is a file; set format: auto, or point path at the folder"
        )
    if fmt == HF_DISK and not is_saved_dataset(path):
        raise ConfigError(
            f"dataset {NAME!r}: format {HF_DISK} needs a folder written by Dataset.save_to_disk or "
            f"DatasetDict.save_to_disk, but {path} holds neither {HF_DICT_FILE} nor "
            f"{' and '.join(HF_SPLIT_FILES)}; point path at that folder, or set format: auto"
        )
    if fmt == "auto":
        raise ConfigError(
            f"dataset {NAME!r}: cannot tell the format of {path.name} from its suffix "
            f"{path.suffix or '(none)'!r} (known: {', '.join(SUFFIX_FORMATS)}); "
            f"set format: {', '.join(TABULAR_FORMATS)}"
        )
    if fmt == IMAGE_FOLDER and settings.split_column is not None:
        raise ConfigError(
            f"dataset {NAME!r}: split_column applies to tabular files; an image folder is split by "
            "val_fraction and test_fraction: remove split_column"
        )
    if fmt == HF_DISK and settings.split_column is not None and (path / HF_DICT_FILE).is_file():
        raise ConfigError(
            f"dataset {NAME!r}: {path} holds a DatasetDict, whose own splits are read: remove split_column"
        )
    if fmt != HF_DISK and settings.image_column is not None:
        raise ConfigError(
            f"dataset {NAME!r}: image_column applies to a dataset saved by save_to_disk ({HF_DISK}), not to "
            f"{fmt} data: remove image_column"
        )
    return path, fmt


# --- reading tables --------------------------------------------------------------------------


def read_table(fmt: str, data: bytes, where: Path) -> dict[str, list[Any]]:
    """The file's columns (name -> values, one per row) from its verified bytes.

    Raises:
        DatasetSourceError: the file is empty or cannot be parsed as ``fmt``; the message names it.
    """
    if not data.strip():
        raise DatasetSourceError(f"dataset {NAME!r}: {where} is empty; it needs a header and labelled rows")
    try:
        table = _read_jsonl(data, where) if fmt == "jsonl" else _read_with_pandas(fmt, data)
    except UnicodeDecodeError as error:
        raise DatasetSourceError(
            f"dataset {NAME!r}: {where} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
        ) from None
    except ValueError as error:  # pandas' and pyarrow's parse errors are ValueErrors
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatasetSourceError(
            f"dataset {NAME!r}: {where} cannot be read as {fmt} ({first_line}); "
            "check the file, or set format if its suffix misleads"
        ) from None
    if not any(table.values()):
        raise DatasetSourceError(f"dataset {NAME!r}: {where} is empty: it has no rows, only {list(table)}")
    return table


def _read_with_pandas(fmt: str, data: bytes) -> dict[str, list[Any]]:
    import pandas as pd

    if fmt == "csv":
        # Every cell as text, and only an empty cell missing: a review reading "NA" stays a review.
        frame = pd.read_csv(
            io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig"
        )
    else:
        frame = pd.read_parquet(io.BytesIO(data))
    return {str(column): frame[column].tolist() for column in frame.columns}


def _read_jsonl(data: bytes, where: Path) -> dict[str, list[Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(data.decode("utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetSourceError(
                f"dataset {NAME!r}: line {number} of {where} is not JSON ({error.msg}); "
                "JSON Lines holds one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise DatasetSourceError(
                f"dataset {NAME!r}: line {number} of {where} is a JSON {type(row).__name__}, not an object; "
                'JSON Lines holds one object per line, e.g. {"text": "...", "label": "..."}'
            )
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return {column: [row.get(column) for row in rows] for column in columns}


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' markers, without importing pandas


def label_name(value: Any) -> str:
    """A label as a class name: ``1.0`` (an integer column with gaps, read as floats) is ``"1"``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _require_column(columns: Sequence[str], key: str, column: str, where: Path | str) -> None:
    if column not in columns:
        raise DatasetSourceError(
            f"dataset {NAME!r}: {key} {column!r} is not a column of {where}; its columns: {list(columns)}. "
            f"Set {key} to one of them"
        )


def _column(table: Mapping[str, list[Any]], key: str, column: str, where: Path | str) -> list[Any]:
    _require_column(list(table), key, column, where)
    return table[column]


def table_examples(
    table: Mapping[str, list[Any]], settings: FilesSettings, where: Path | str, value_key: str = "text_column"
) -> list[_Example]:
    """Rows with an example and a label (rows lacking either are dropped, with a warning); the
    setting ``value_key`` names the examples' column (texts, or an image column's keys).

    Raises:
        DatasetSourceError: a column is absent, no row is complete, or a split value is unknown.
    """
    value_column = getattr(settings, value_key)
    texts = _column(table, value_key, value_column, where)
    labels = _column(table, "label_column", settings.label_column, where)
    splits = (
        None
        if settings.split_column is None
        else _column(table, "split_column", settings.split_column, where)
    )
    examples: list[_Example] = []
    bad_splits: Counter[str] = Counter()
    n_dropped = 0
    for index, (value, label) in enumerate(zip(texts, labels, strict=True)):
        if _is_missing(value) or _is_missing(label):
            n_dropped += 1
            continue
        text = value if isinstance(value, str) else str(value)
        split: SplitName | None = None
        if splits is not None:
            raw = splits[index]
            split = None if _is_missing(raw) else SPLIT_VALUES.get(str(raw).strip().lower())
            if split is None:
                bad_splits["(empty)" if _is_missing(raw) else str(raw)] += 1
        examples.append(_Example(text, label_name(label), text, split))
    if bad_splits:
        shown = ", ".join(f"{value!r} ({count} rows)" for value, count in bad_splits.most_common(_SHOW_FIRST))
        raise DatasetSourceError(
            f"dataset {NAME!r}: split_column {settings.split_column!r} of {where} holds values other than "
            f"train, val, validation, test: {shown}. Fix those rows, or remove split_column to split "
            "by val_fraction and test_fraction"
        )
    if n_dropped:
        logger.warning(
            "dataset %r: dropped %d of %d rows of %s without a %r or %r value",
            NAME,
            n_dropped,
            len(texts),
            where,
            value_column,
            settings.label_column,
        )
    if not examples:
        raise DatasetSourceError(
            f"dataset {NAME!r}: no row of {where} has both a {value_column!r} and a "
            f"{settings.label_column!r} value; fill them in, or set {value_key} and label_column"
        )
    return examples


# --- image folders ---------------------------------------------------------------------------


def scan_image_folder(folder: Path) -> list[str]:
    """The images of every class sub-folder (``class/name.png``, POSIX, sorted).

    Raises:
        DatasetSourceError: fewer than two class folders hold images.
    """
    images: list[str] = []
    skipped: list[str] = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            rel = f"{class_dir.name}/{file.name}"
            (images if file.suffix.lower() in IMAGE_SUFFIXES else skipped).append(rel)
    if skipped:
        logger.warning(
            "dataset %r: skipped %d file(s) of %s that are not %s images, e.g. %s",
            NAME,
            len(skipped),
            folder,
            "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES),
            skipped[:_SHOW_FIRST],
        )
    classes = sorted({rel.split("/", 1)[0] for rel in images})
    if not classes:
        raise DatasetSourceError(
            f"dataset {NAME!r}: path {folder} is neither an image folder (no sub-folder holds "
            f"{', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} images) nor a dataset saved by save_to_disk "
            f"(no {HF_DICT_FILE}, nor {' and '.join(HF_SPLIT_FILES)}); point path at one of them"
        )
    if len(classes) < 2:
        raise DatasetSourceError(
            f"dataset {NAME!r}: image folder {folder} has {len(classes)} class folder(s) with images "
            f"{classes}; it needs one sub-folder per class, at least two, each holding "
            f"{', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} images (e.g. {folder}/cat/1.png, {folder}/dog/1.png)"
        )
    return images


def decode_images(
    files: Mapping[str, bytes], paths: Sequence[str], settings: FilesSettings, folder: Path
) -> np.ndarray:
    """uint8 pixels (N, S, S), or (N, S, S, 3) in RGB, resized to ``image_size`` S.

    Raises:
        DatasetSourceError: an image cannot be decoded; the message names it.
    """
    from PIL import Image

    size = settings.image_size
    mode = "L" if settings.grayscale else "RGB"
    pixels = np.empty(
        (len(paths), size, size) if settings.grayscale else (len(paths), size, size, 3), np.uint8
    )
    for index, rel in enumerate(paths):
        try:
            with Image.open(io.BytesIO(files[rel])) as image:  # a GIF's first frame
                pixels[index] = np.asarray(
                    image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                )
        # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error and more for a bad file.
        except Exception as error:
            raise DatasetSourceError(
                f"dataset {NAME!r}: image {rel} in {folder} cannot be decoded ({type(error).__name__}: {error}); "
                "replace or remove it"
            ) from None
    return pixels


# --- datasets saved by Hugging Face datasets ----------------------------------------------------


def scan_saved_dataset(folder: Path) -> list[str]:
    """The files ``load_from_disk`` reads (POSIX, relative to ``folder``): a DatasetDict's
    ``dataset_dict.json`` and each split's sub-folder, or one Dataset's ``state.json``,
    ``dataset_info.json`` and the .arrow shards ``state.json`` names. Cache files that ``map`` may
    have left beside them are not pinned: ``load_from_disk`` never reads them.

    Raises:
        DatasetSourceError: a JSON file is malformed, or a file it names is missing.
    """
    if not (folder / HF_DICT_FILE).is_file():
        return _saved_split_files(folder, "")
    splits = _saved_json(folder, HF_DICT_FILE).get("splits")
    if not isinstance(splits, list) or not all(isinstance(split, str) and _plain(split) for split in splits):
        raise _not_saved(folder, HF_DICT_FILE, f"its splits are {splits!r}")
    return [HF_DICT_FILE, *(rel for split in splits for rel in _saved_split_files(folder, f"{split}/"))]


def _saved_split_files(folder: Path, prefix: str) -> list[str]:
    state = _saved_json(folder, f"{prefix}state.json")
    shards = state.get("_data_files")
    names = (
        [entry.get("filename") for entry in shards if isinstance(entry, dict)]
        if isinstance(shards, list)
        else []
    )
    if not names or not all(isinstance(name, str) and _plain(name) for name in names):
        raise _not_saved(folder, f"{prefix}state.json", f"its _data_files are {shards!r}")
    files = [f"{prefix}{name}" for name in (*HF_SPLIT_FILES, *names)]
    missing = [rel for rel in files if not (folder / rel).is_file()]
    if missing:
        raise DatasetSourceError(
            f"dataset {NAME!r}: the dataset saved at {folder} lacks {missing[:_SHOW_FIRST]}; restore them, "
            "or save it again with save_to_disk"
        )
    return files


def _plain(name: str) -> bool:
    """A file or folder name inside the saved dataset's folder (never a path out of it)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _saved_json(folder: Path, rel: str) -> dict[str, Any]:
    try:
        data = json.loads((folder / rel).read_bytes())
    except FileNotFoundError:
        raise DatasetSourceError(
            f"dataset {NAME!r}: the dataset saved at {folder} lacks {rel}; restore it, or save it again "
            "with save_to_disk"
        ) from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _not_saved(folder, rel, str(error)) from None
    if not isinstance(data, dict):
        raise _not_saved(folder, rel, f"it holds a JSON {type(data).__name__}")
    return data


def _not_saved(folder: Path, rel: str, why: str) -> DatasetSourceError:
    return DatasetSourceError(
        f"dataset {NAME!r}: {folder / rel} is not what save_to_disk writes ({why}); save the dataset again "
        "with save_to_disk"
    )


def read_saved_dataset(files: Mapping[str, bytes], settings: FilesSettings, folder: Path) -> _Read:
    """The examples of a folder ``save_to_disk`` wrote, loaded with ``datasets.load_from_disk``
    from a private copy of the verified bytes, so what is read is exactly what the manifest pins.

    A DatasetDict's splits named train, validation or val, and test are the splits (others are
    left out, with a warning); a single Dataset is split by fractions, or by ``split_column``.

    Raises:
        DatasetSourceError: ``load_from_disk`` fails, a DatasetDict has no train split, or a column
            is absent or not of a kind that holds one example or label per row.
    """
    import datasets  # heavy: imported only to read such a folder

    with tempfile.TemporaryDirectory(prefix="green_deploy_hf_disk_") as copy:
        try:
            for rel, data in files.items():
                (Path(copy) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(copy) / rel).write_bytes(_unformatted(data) if rel.endswith("state.json") else data)
            loaded = datasets.load_from_disk(copy)
        # pyarrow's parse errors are ValueErrors; a malformed dataset_info.json raises Key- or TypeErrors.
        except (OSError, ValueError, KeyError, TypeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise DatasetSourceError(
                f"dataset {NAME!r}: datasets.load_from_disk cannot read {folder} ({type(error).__name__}: "
                f"{reason}); save it again with save_to_disk"
            ) from None
        single = not isinstance(loaded, datasets.DatasetDict)
        parts: Sequence[tuple[str, SplitName | None, datasets.Dataset]] = (
            [("", None, loaded)] if single else _dict_parts(loaded, folder)
        )
        examples: list[_Example] = []
        images: dict[str, bytes] = {}
        names: tuple[str, ...] | None = None
        for name, split, part in parts:  # train first: its features name the image column and classes
            where = str(folder) if single else f"split {name!r} of {folder}"
            settings = _with_image_column(part.features, settings, where)
            rows, part_images, part_names = _saved_examples(part, settings, where, f"{name} " if name else "")
            examples += rows if split is None else [replace(row, split=split) for row in rows]
            images.update(part_images)
            names = names or part_names
    if single:
        given: tuple[SplitName, ...] = () if settings.split_column is None else SPLITS
        given_by = f"split_column {settings.split_column!r}"
    else:
        given = tuple(split for split in SPLITS if split in {part[1] for part in parts})
        given_by = f"the DatasetDict's splits {[part[0] for part in parts]}"
    return _Read(
        examples,
        f"label_column {settings.label_column!r} of {folder}",
        given,
        given_by,
        names,
        None if settings.image_column is None else images,
    )


def _dict_parts(loaded: datasets.DatasetDict, folder: Path) -> list[tuple[str, SplitName, datasets.Dataset]]:
    """The DatasetDict's splits read, train first: (its name, the split it is, the Dataset).

    Raises:
        DatasetSourceError: none is named train.
    """
    named = {name: SPLIT_VALUES.get(name.strip().lower()) for name in loaded}
    if "train" not in named.values():
        raise DatasetSourceError(
            f"dataset {NAME!r}: the DatasetDict at {folder} has splits {list(named)} and no train split; "
            "name the training split train (validation or val, and test, are read too; one missing is cut "
            "from train), or save a single Dataset, which is split by val_fraction and test_fraction"
        )
    left_out = [name for name, split in named.items() if split is None]
    if left_out:
        logger.warning(
            "dataset %r: split(s) %s of the DatasetDict at %s are not train, validation, val or test: not read",
            NAME,
            left_out,
            folder,
        )
    parts = [(name, split, loaded[name]) for name, split in named.items() if split is not None]
    return sorted(parts, key=lambda part: SPLITS.index(part[1]))


def _unformatted(state: bytes) -> bytes:
    """A ``state.json`` without the output format ``set_format`` recorded: rows are read here as
    Arrow, and a torch or tensorflow format would make ``load_from_disk`` import that framework."""
    fields = json.loads(state)
    fields.update(_format_type=None, _format_kwargs={}, _format_columns=None, _output_all_columns=False)
    return json.dumps(fields).encode()


def _with_image_column(features: datasets.Features, settings: FilesSettings, where: str) -> FilesSettings:
    """``settings`` naming the image column to read: as given, or the data's one Image column
    when ``text_column`` is not a column."""
    from datasets import Image

    images = [name for name, feature in features.items() if isinstance(feature, Image)]
    if settings.image_column is not None or settings.text_column in features or len(images) != 1:
        return settings
    logger.info("dataset %r: reading images from the Image column %r of %s", NAME, images[0], where)
    return replace(settings, image_column=images[0])


def _saved_examples(
    part: datasets.Dataset, settings: FilesSettings, where: str, prefix: str
) -> tuple[list[_Example], dict[str, bytes], tuple[str, ...] | None]:
    """One Dataset's examples, its images' bytes by item (``<prefix>row <i>``), and its label
    column's ClassLabel names (None for a plain column)."""
    from datasets import ClassLabel, Image, Value

    features = part.features
    value_key = "text_column" if settings.image_column is None else "image_column"
    value_column: str = getattr(settings, value_key)
    needed = {
        value_key: value_column,
        "label_column": settings.label_column,
        "split_column": settings.split_column,
    }
    for key, column in needed.items():
        if column is not None:
            _require_column(list(features), key, column, where)
    value_feature, label_feature = features[value_column], features[settings.label_column]
    if value_key == "image_column" and not isinstance(value_feature, Image):
        raise DatasetSourceError(
            f"dataset {NAME!r}: image_column {value_column!r} of {where} is of type {type(value_feature).__name__}, "
            "not Image; set image_column to an Image column, or remove it to read text_column"
        )
    if value_key == "text_column" and not isinstance(value_feature, Value):
        fix = (
            f"set image_column: {value_column}"
            if isinstance(value_feature, Image)
            else "set text_column to a text column"
        )
        raise DatasetSourceError(
            f"dataset {NAME!r}: text_column {value_column!r} of {where} is of type {type(value_feature).__name__}, "
            f"not one text per row (a Value); {fix}"
        )
    if not isinstance(label_feature, ClassLabel | Value):
        raise DatasetSourceError(
            f"dataset {NAME!r}: label_column {settings.label_column!r} of {where} is "
            f"of type {type(label_feature).__name__}, not one label per row (a ClassLabel or a Value); "
            "set label_column to such a column"
        )
    arrow = part.select_columns([c for c in needed.values() if c is not None]).with_format("arrow")[:]
    table = {name: arrow.column(name).to_pylist() for name in arrow.column_names}
    names = tuple(label_feature.names) if isinstance(label_feature, ClassLabel) else None
    if names is not None:  # a ClassLabel stores ids; -1 marks an unlabelled row
        table[settings.label_column] = [
            None if value is None or value < 0 else names[value] for value in table[settings.label_column]
        ]
    images: dict[str, bytes] = {}
    if value_key == "image_column":
        keys: list[str | None] = []
        for row, image in enumerate(table[value_column]):
            if image is None or (image["bytes"] is None and image["path"] is None):
                keys.append(None)
                continue
            if image["bytes"] is None:
                raise DatasetSourceError(
                    f"dataset {NAME!r}: image_column {value_column!r} of {where}, row {row}, refers to "
                    f"{image['path']} outside the saved dataset, which the manifest cannot pin; fetch the images to "
                    "local files and save the dataset again (save_to_disk embeds local images' bytes)"
                )
            keys.append(f"{prefix}row {row}")
            images[f"{prefix}row {row}"] = image["bytes"]
        table[value_column] = keys
    return table_examples(table, settings, where, value_key), images, names


# --- splitting -------------------------------------------------------------------------------


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes for a class of ``n``: rounded shares, at least one in each split
    from 3 examples on, and always at least one in train."""
    n_val, n_test = int(n * val_fraction + 0.5), int(n * test_fraction + 0.5)
    floor = 1 if n >= 3 else 0
    n_val, n_test = max(n_val, floor), max(n_test, floor)
    while n_val + n_test > n - 1:
        if n_test >= n_val and n_test > floor:
            n_test -= 1
        elif n_val > floor:
            n_val -= 1
        else:
            break
    return n - n_val - n_test, n_val, n_test


def stratified_splits(
    examples: Sequence[_Example], val_fraction: float, test_fraction: float, seed: int
) -> dict[SplitName, list[_Example]]:
    """Each class cut into train / val / test by ``split_counts``, in sha1 order of (seed, key)."""
    by_class: dict[str, list[_Example]] = defaultdict(list)
    for example in examples:
        by_class[example.label].append(example)
    splits: dict[SplitName, list[_Example]] = {split: [] for split in SPLITS}
    for label in sorted(by_class):
        # Equal texts sort together, so a duplicated text rarely straddles two splits.
        members = sorted(by_class[label], key=lambda e: sha1_hex(f"{NAME}\x00{seed}\x00{e.key}"))
        n_train, n_val, _ = split_counts(len(members), val_fraction, test_fraction)
        splits["train"] += members[:n_train]
        splits["val"] += members[n_train : n_train + n_val]
        splits["test"] += members[n_train + n_val :]
        if len(members) < 3:
            logger.warning(
                "dataset %r: class %r has %d example(s), too few to appear in every split",
                NAME,
                label,
                len(members),
            )
    return splits


def given_splits(examples: Sequence[_Example]) -> dict[SplitName, list[_Example]]:
    """The examples grouped by the split each names."""
    splits: dict[SplitName, list[_Example]] = {split: [] for split in SPLITS}
    for example in examples:
        assert example.split is not None  # every example of data that names its splits has one
        splits[example.split].append(example)
    return splits


class _Files:
    name = NAME
    root = ""  # per settings: ``root_for``
    settings_class = FilesSettings
    subset_keys: tuple[str, ...] = ()
    at_most_keys: tuple[str, ...] = ()

    def manifest_name(self, settings: FilesSettings) -> str:
        path = absolute_path(settings)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", path.name).strip("_")[:40] or "data"
        return f"{NAME}_{slug}_{sha1_hex(str(path))[:10]}"

    def root_for(self, settings: FilesSettings) -> str:
        path = absolute_path(settings)
        return str(path if resolved_format(settings) in FOLDER_FORMATS else path.parent)

    def scan(self, settings: FilesSettings, root_path: Path) -> list[str]:
        path, fmt = check_target(settings)
        if fmt == IMAGE_FOLDER:
            return scan_image_folder(path)
        return scan_saved_dataset(path) if fmt == HF_DISK else [path.name]

    def scan_settings(self, settings: FilesSettings) -> dict[str, Any]:
        return {"path": str(absolute_path(settings)), "format": resolved_format(settings)}

    def needs(self, settings: FilesSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: FilesSettings) -> list[str]:
        return list(paths)

    def build(self, files: Mapping[str, bytes], settings: FilesSettings) -> RawDataset:
        # Settings may have changed since the freeze (which checked them): check them again.
        path, fmt = check_target(settings)
        read = _read(files, settings, path, fmt)
        examples = read.examples
        found = {example.label for example in examples}
        classes = _classes(read, settings)
        unknown = sorted(found - set(classes))
        if unknown:
            raise ConfigError(
                f"dataset {NAME!r}: {read.what} holds label(s) {unknown[:10]} that classes (the model's output order) "
                f"does not name: {list(classes)}; add them to classes, or drop those rows"
            )
        if len(found) < 2:
            raise DatasetSourceError(
                f"dataset {NAME!r}: {read.what} holds a single class {sorted(found)[0]!r}; a classifier needs at "
                "least two: add examples of another class, or set label_column to the column of labels"
            )
        splits, split_by, fix = _splits(read, settings)
        _require_splittable(splits, len(examples), split_by, path, fix)
        caps: dict[SplitName, int | None] = {
            "train": settings.max_train,
            "val": settings.max_val,
            "test": settings.max_test,
        }
        index = {label: i for i, label in enumerate(classes)}
        raw: dict[SplitName, RawSplit] = {}
        for split in SPLITS:
            rows = take_in_order(splits[split], lambda e: e.key, caps[split])
            items = [row.item for row in rows]
            x = items if read.images is None else decode_images(read.images, items, settings, path)
            raw[split] = RawSplit(x, np.array([index[row.label] for row in rows], dtype=np.int64))
        return RawDataset(
            name=NAME,
            train=raw["train"],
            val=raw["val"],
            test=raw["test"],
            classes=classes,
            extra={"format": fmt, "path": str(path), "split_by": split_by, "n_examples": len(examples)},
        )

    def describe(self, settings: FilesSettings) -> str:
        path, fmt = absolute_path(settings), resolved_format(settings)
        colour = "grayscale" if settings.grayscale else "RGB"
        images = f"{settings.image_size}x{settings.image_size} {colour} images"
        if fmt == IMAGE_FOLDER:
            what = images
        elif fmt == HF_DISK and settings.image_column is not None:
            what = f"{images} {settings.image_column!r}, label {settings.label_column!r}"
        elif fmt == HF_DISK:
            what = f"text {settings.text_column!r} or its Image column as {images}, label {settings.label_column!r}"
        else:
            what = f"text {settings.text_column!r}, label {settings.label_column!r}"
        if settings.split_column:
            split_by = f"split by {settings.split_column!r}"
        elif fmt == HF_DISK and (path / HF_DICT_FILE).is_file():
            split_by = "split as its DatasetDict is"
        else:
            split_by = f"split per class by seed {settings.seed}"
        return f"your own {fmt} data at {path} ({what}; {split_by})"


def _read(files: Mapping[str, bytes], settings: FilesSettings, path: Path, fmt: str) -> _Read:
    """The examples of ``fmt`` data from its verified files."""
    if fmt == IMAGE_FOLDER:
        examples = [_Example(rel, PurePosixPath(rel).parent.name, rel) for rel in sorted(files)]
        return _Read(examples, f"image folder {path}", images=files)
    if fmt == HF_DISK:
        return read_saved_dataset(files, settings, path)
    examples = table_examples(read_table(fmt, files[path.name], path), settings, path)
    given: tuple[SplitName, ...] = () if settings.split_column is None else SPLITS
    return _Read(
        examples,
        f"label_column {settings.label_column!r} of {path}",
        given,
        f"split_column {settings.split_column!r}",
    )


def _classes(read: _Read, settings: FilesSettings) -> tuple[str, ...]:
    """The class order: ``classes`` as given, else a ClassLabel's names, else the labels sorted.

    Raises:
        ConfigError: ``classes`` leaves out a name of the ClassLabel.
    """
    if settings.classes is None:
        return read.label_names or tuple(sorted({example.label for example in read.examples}))
    left_out = [name for name in read.label_names or () if name not in settings.classes]
    if left_out:
        raise ConfigError(
            f"dataset {NAME!r}: {read.what} is a ClassLabel naming {list(read.label_names or ())}; classes "
            f"{list(settings.classes)} does not name {left_out}: name every one, in the model's output order, "
            "or remove classes to take the ClassLabel's order"
        )
    return settings.classes


def _splits(read: _Read, settings: FilesSettings) -> tuple[dict[SplitName, list[_Example]], str, str]:
    """The examples of each split, how they were split, and what to do when a split is too small.

    Splits the data names are kept; those it lacks (a DatasetDict without validation or test) are
    cut from train per class, as a whole dataset would be.
    """
    fractions = (
        f"val_fraction {settings.val_fraction}, test_fraction {settings.test_fraction}, seed {settings.seed}"
    )
    more = "add examples (at least 3 per class), raise val_fraction or test_fraction"
    if not read.given:
        return (
            stratified_splits(read.examples, settings.val_fraction, settings.test_fraction, settings.seed),
            fractions,
            f"{more}, or give a split_column",
        )
    splits = given_splits(read.examples)
    cut = [split for split in SPLITS if split not in read.given]
    if not cut:
        return splits, read.given_by, f"give each split at least {MIN_PER_SPLIT} examples ({read.given_by})"
    parts = stratified_splits(splits["train"], settings.val_fraction, settings.test_fraction, settings.seed)
    splits["train"] = [example for split in SPLITS if split not in cut for example in parts[split]]
    for split in cut:
        splits[split] = parts[split]
    return splits, f"{read.given_by}; {' and '.join(cut)} cut from train by {fractions}", more


def _require_splittable(
    splits: Mapping[SplitName, Sequence[_Example]], n: int, split_by: str, path: Path, fix: str
) -> None:
    sizes = {split: len(rows) for split, rows in splits.items()}
    if min(sizes.values()) >= MIN_PER_SPLIT:
        return
    raise DatasetSourceError(
        f"dataset {NAME!r}: {path} is too small to split: {n} examples give "
        + ", ".join(f"{split} {size}" for split, size in sizes.items())
        + f" ({split_by}); every split needs at least {MIN_PER_SPLIT} examples: {fix}"
    )


SOURCE = _Files()

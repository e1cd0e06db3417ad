"""A user's own labelled data as a zoo dataset, by configuration alone.

``path`` names a CSV, JSON Lines or Parquet file of texts and labels, or an image folder with one
sub-folder per class. Like the system's datasets, its files are pinned by sha256 in a manifest
(root: the data's absolute directory), here named per path so several own datasets coexist; the
first load freezes it, and a later load refuses a changed or missing file, naming the command
that refreezes it. Files added to an image folder after the freeze are not read until a refreeze.

Splits come from a ``split_column`` when the data has one, else from ``val_fraction`` and
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
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from green_deploy.errors import ConfigError, DatasetSourceError
from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.settings import require, require_fractions
from green_deploy.zoo.data.splitting import SPLITS, SplitName, sha1_hex, take_in_order

NAME = "files"
TABULAR_FORMATS = ("csv", "jsonl", "parquet")
IMAGE_FOLDER = "imagefolder"
FORMATS = (*TABULAR_FORMATS, IMAGE_FOLDER)
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
    ``image_size`` is in pixels (images become ``image_size`` x ``image_size``); ``max_*`` cap a
    split's size in examples (None = all).
    """

    path: str = ""
    format: str = "auto"
    text_column: str = "text"
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
            "path is required: the CSV, JSON Lines or Parquet file, or the image folder, to read "
            "(e.g. dataset_options: {path: data/01_raw/reviews.csv})",
        )
        require(
            self.format in ("auto", *FORMATS),
            NAME,
            f"format must be one of auto, {', '.join(FORMATS)}; got {self.format!r} "
            "(auto tells it from the suffix, a folder being an imagefolder)",
        )
        if self.classes is not None:
            require(
                len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes),
                NAME,
                f"classes must name each of at least two labels once, in the model's output order; got {list(self.classes)}",
            )
        for key in ("text_column", "label_column", "split_column"):
            value = getattr(self, key)
            require(value is None or bool(value.strip()), NAME, f"{key} must name a column, got {value!r}")
        columns = [c for c in (self.text_column, self.label_column, self.split_column) if c is not None]
        require(
            len(set(columns)) == len(columns),
            NAME,
            f"text_column, label_column and split_column must be different columns, got {columns}",
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
    or the image's path), ``item`` is what ``RawSplit.x`` holds (the text, or the image's path)."""

    key: str
    label: str
    item: str
    split: SplitName | None = None


def absolute_path(settings: FilesSettings) -> Path:
    """``path`` made absolute against the working directory (a Kedro run's project root),
    normalized but with links kept (the manifest names the path the user gave)."""
    return Path(os.path.abspath(Path(settings.path).expanduser()))


def resolved_format(settings: FilesSettings) -> str:
    """The format read: the explicit one, else a folder's (imagefolder) or the suffix's; ``auto``
    when it cannot be told (``check_target`` says why). Never raises: error messages use it."""
    if settings.format != "auto":
        return settings.format
    path = absolute_path(settings)
    if path.is_dir():
        return IMAGE_FOLDER
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
            "Set path to your CSV, .jsonl or .parquet file or image folder; a relative path is read "
            "from the working directory, the project root in a Kedro run"
        )
    fmt = resolved_format(settings)
    if path.is_dir() and fmt != IMAGE_FOLDER:
        raise ConfigError(
            f"dataset {NAME!r}: path {path} is a folder, but format is {fmt!r}; a folder is read as "
            f"{IMAGE_FOLDER} (one sub-folder per class): set format: auto or {IMAGE_FOLDER}, or point path at a file"
        )
    if not path.is_dir() and fmt == IMAGE_FOLDER:
        raise ConfigError(
            f"dataset {NAME!r}: format {IMAGE_FOLDER} needs a folder with one sub-folder per class, "
            f"but {path} is a file; set format: auto, or point path at the folder"
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


def _column(table: Mapping[str, list[Any]], key: str, column: str, where: Path) -> list[Any]:
    if column not in table:
        raise DatasetSourceError(
            f"dataset {NAME!r}: {key} {column!r} is not a column of {where}; its columns: {list(table)}. "
            f"Set {key} to one of them"
        )
    return table[column]


def table_examples(table: Mapping[str, list[Any]], settings: FilesSettings, where: Path) -> list[_Example]:
    """Rows with a text and a label (rows lacking either are dropped, with a warning).

    Raises:
        DatasetSourceError: a column is absent, no row is complete, or a split value is unknown.
    """
    texts = _column(table, "text_column", settings.text_column, where)
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
            settings.text_column,
            settings.label_column,
        )
    if not examples:
        raise DatasetSourceError(
            f"dataset {NAME!r}: no row of {where} has both a {settings.text_column!r} and a "
            f"{settings.label_column!r} value; fill them in, or set text_column and label_column"
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
    splits: dict[SplitName, list[_Example]] = {split: [] for split in SPLITS}
    for example in examples:
        assert example.split is not None  # table_examples refused rows without one
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
        return str(path if resolved_format(settings) == IMAGE_FOLDER else path.parent)

    def scan(self, settings: FilesSettings, root_path: Path) -> list[str]:
        path, fmt = check_target(settings)
        return scan_image_folder(path) if fmt == IMAGE_FOLDER else [path.name]

    def scan_settings(self, settings: FilesSettings) -> dict[str, Any]:
        return {"path": str(absolute_path(settings)), "format": resolved_format(settings)}

    def needs(self, settings: FilesSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: FilesSettings) -> list[str]:
        return list(paths)

    def build(self, files: Mapping[str, bytes], settings: FilesSettings) -> RawDataset:
        path, fmt = absolute_path(settings), resolved_format(settings)
        if fmt == IMAGE_FOLDER:
            examples = [_Example(rel, PurePosixPath(rel).parent.name, rel) for rel in sorted(files)]
            what = f"image folder {path}"
        else:
            examples = table_examples(read_table(fmt, files[path.name], path), settings, path)
            what = f"label_column {settings.label_column!r} of {path}"
        found = {example.label for example in examples}
        classes = tuple(sorted(found)) if settings.classes is None else settings.classes
        unknown = sorted(found - set(classes))
        if unknown:
            raise ConfigError(
                f"dataset {NAME!r}: {what} holds label(s) {unknown[:10]} that classes (the model's output order) "
                f"does not name: {list(classes)}; add them to classes, or drop those rows"
            )
        if len(found) < 2:
            raise DatasetSourceError(
                f"dataset {NAME!r}: {what} holds a single class {sorted(found)[0]!r}; a classifier needs at "
                "least two: add examples of another class, or set label_column to the column of labels"
            )
        if settings.split_column is None:
            splits = stratified_splits(examples, settings.val_fraction, settings.test_fraction, settings.seed)
            split_by = f"val_fraction {settings.val_fraction}, test_fraction {settings.test_fraction}, seed {settings.seed}"
        else:
            splits = given_splits(examples)
            split_by = f"split_column {settings.split_column!r}"
        _require_splittable(splits, len(examples), split_by, path, settings.split_column is not None)
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
            x = decode_images(files, items, settings, path) if fmt == IMAGE_FOLDER else items
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
        if fmt == IMAGE_FOLDER:
            colour = "grayscale" if settings.grayscale else "RGB"
            what = f"{settings.image_size}x{settings.image_size} {colour} images"
        else:
            what = f"text {settings.text_column!r}, label {settings.label_column!r}"
        split_by = (
            f"split by {settings.split_column!r}"
            if settings.split_column
            else f"split per class by seed {settings.seed}"
        )
        return f"your own {fmt} data at {path} ({what}; {split_by})"


def _require_splittable(
    splits: Mapping[SplitName, Sequence[_Example]], n: int, split_by: str, path: Path, given: bool
) -> None:
    sizes = {split: len(rows) for split, rows in splits.items()}
    if min(sizes.values()) >= MIN_PER_SPLIT:
        return
    fix = (
        f"give each split at least {MIN_PER_SPLIT} rows in the split column"
        if given
        else "add examples (at least 3 per class), raise val_fraction or test_fraction, or give a split_column"
    )
    raise DatasetSourceError(
        f"dataset {NAME!r}: {path} is too small to split: {n} examples give "
        + ", ".join(f"{split} {size}" for split, size in sizes.items())
        + f" ({split_by}); every split needs at least {MIN_PER_SPLIT} examples: {fix}"
    )


SOURCE = _Files()

"""Code-language snippets from site-packages: split by file, labels from the extension."""

from __future__ import annotations

import itertools
from pathlib import PurePosixPath

import numpy as np
import pytest

from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.data.code_languages import DEFAULT_LANGUAGES, header_comment_bytes

SETTINGS = {"max_train_per_language": 40, "max_val_per_language": 10, "max_test_per_language": 20}


@pytest.fixture(scope="module")
def dataset() -> RawDataset:
    return load_dataset("code_languages", SETTINGS)


def test_no_file_or_snippet_in_two_splits(dataset: RawDataset) -> None:
    files = {split: set(paths) for split, paths in dataset.extra["files"].items()}
    snippets = {split: set(getattr(dataset, split).x) for split in files}
    for a, b in itertools.combinations(files, 2):
        assert not files[a] & files[b]
        assert not snippets[a] & snippets[b]


def test_labels_match_extensions_and_caps(dataset: RawDataset) -> None:
    extensions = dict(DEFAULT_LANGUAGES)
    assert dataset.classes == tuple(extensions)
    for split, cap in (("train", 40), ("val", 10), ("test", 20)):
        raw = getattr(dataset, split)
        assert np.bincount(raw.y, minlength=len(dataset.classes)).max() <= cap
        for path, label, text in zip(dataset.extra["files"][split], raw.y, raw.x, strict=True):
            assert PurePosixPath(path).suffix in extensions[dataset.classes[label]]
            assert 0 < len(text) <= 512
            assert not {"tests", "test", "testing"} & set(PurePosixPath(path).parts)
    assert set(np.unique(dataset.test.y)) == set(range(len(dataset.classes)))


def test_loads_are_identical(dataset: RawDataset) -> None:
    again = load_dataset("code_languages", SETTINGS)
    assert again.train.x == dataset.train.x and np.array_equal(again.test.y, dataset.test.y)


def test_header_comment_is_skipped_but_code_is_not() -> None:
    licence = b"/*\n Copyright 2024\n Licensed under X\n*/\n\n// more\n#include <a.h>\nint x;\n"
    assert licence[header_comment_bytes(licence) :].startswith(b"#include")
    python = b"#!/usr/bin/env python\n# Copyright\n#\nimport os\n"
    assert python[header_comment_bytes(python) :] == b"import os\n"
    assert header_comment_bytes(b"# only a comment\n") == 0

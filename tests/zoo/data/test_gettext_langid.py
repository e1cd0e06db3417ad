"""Language id of gettext strings: split by catalogue domain, strings traceable to their catalogue."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.data.gettext_langid import ROOT, catalogue_strings, language_of_locale

SETTINGS = {
    "languages": ["de", "pt", "sv"],
    "max_train_per_language": 300,
    "max_val_per_language": 50,
    "max_test_per_language": 100,
}


@pytest.fixture(scope="module")
def dataset() -> RawDataset:
    return load_dataset("gettext_langid", SETTINGS)


def _catalogue_texts(language: str, domain: str) -> set[str]:
    texts: set[str] = set()
    for mo in Path(ROOT).glob(f"*/LC_MESSAGES/{domain}.mo"):
        if language_of_locale(mo.parts[-3]) == language:
            try:
                texts |= {msgstr.strip()[:200] for _, msgstr in catalogue_strings(mo.read_bytes())}
            except UnicodeDecodeError:
                continue
    return texts


def test_no_domain_in_two_splits(dataset: RawDataset) -> None:
    domains = {split: set(names) for split, names in dataset.extra["domains"].items()}
    for a, b in itertools.combinations(domains, 2):
        assert not domains[a] & domains[b], (a, b)
    assert all(domains.values())


def test_no_string_in_two_splits_and_no_duplicates(dataset: RawDataset) -> None:
    splits = [set(s.x) for s in (dataset.train, dataset.val, dataset.test)]
    assert sum(map(len, splits)) == len(dataset.train) + len(dataset.val) + len(dataset.test)
    for a, b in itertools.combinations(splits, 2):
        assert not a & b


def test_strings_come_from_their_domain_in_their_language(dataset: RawDataset) -> None:
    for split in ("train", "test"):
        raw = getattr(dataset, split)
        for text, label, domain in list(zip(raw.x, raw.y, dataset.extra["domains"][split], strict=True))[:40]:
            assert text in _catalogue_texts(dataset.classes[label], domain)


def test_test_strings_are_absent_from_training_catalogues(dataset: RawDataset) -> None:
    train_texts: set[str] = set()
    for language in dataset.classes:
        for domain in sorted(set(dataset.extra["domains"]["train"]))[:25]:
            train_texts |= _catalogue_texts(language, domain)
    assert not train_texts & set(dataset.test.x)


def test_labels_and_caps(dataset: RawDataset) -> None:
    assert dataset.classes == ("de", "pt", "sv")
    for split, cap in ((dataset.train, 300), (dataset.val, 50), (dataset.test, 100)):
        counts = np.bincount(split.y, minlength=3)
        assert counts.max() <= cap and counts.min() > 0
        assert all(12 <= len(text) <= 200 for text in split.x)


def test_loads_are_identical(dataset: RawDataset) -> None:
    again = load_dataset("gettext_langid", SETTINGS)
    assert again.test.x == dataset.test.x and np.array_equal(again.train.y, dataset.train.y)


def test_locale_names() -> None:
    assert language_of_locale("pt_BR") == "pt"
    assert language_of_locale("de") == "de"
    assert language_of_locale("sr@latin") is None
    assert language_of_locale("de.UTF-8") is None

"""Docstring -> function retrieval over the stdlib: split by module file, no duplicate sides."""

from __future__ import annotations

import itertools

import pytest

from green_deploy.zoo.data import RawDataset, load_dataset
from green_deploy.zoo.data.stdlib_retrieval import StdlibRetrievalSettings, module_pairs

SETTINGS = {"n_test": 60, "n_val": 20, "max_train": 150}


@pytest.fixture(scope="module")
def dataset() -> RawDataset:
    return load_dataset("stdlib_retrieval", SETTINGS)


def test_no_module_file_in_two_splits(dataset: RawDataset) -> None:
    modules = {split: {f.split(":")[0] for f in names} for split, names in dataset.extra["functions"].items()}
    for a, b in itertools.combinations(modules, 2):
        assert not modules[a] & modules[b]


def test_sizes_and_alignment(dataset: RawDataset) -> None:
    for split, size in ((dataset.train, 150), (dataset.val, 20), (dataset.test, 60)):
        assert len(split) == size and split.pairs is not None and len(split.pairs) == size
        assert split.y is None


def test_queries_and_documents_are_unique_and_separate(dataset: RawDataset) -> None:
    queries = [q for s in (dataset.train, dataset.val, dataset.test) for q in s.x]
    documents = [d for s in (dataset.train, dataset.val, dataset.test) for d in s.pairs or []]
    assert len(set(queries)) == len(queries) and len(set(documents)) == len(documents)
    for query, document in zip(queries, documents, strict=True):
        assert len(query.split()) >= 4 and len(query) <= 200 and len(document) <= 600
        assert query not in document


def test_documents_are_the_named_functions(dataset: RawDataset) -> None:
    for name, document in zip(dataset.extra["functions"]["test"], dataset.test.pairs or [], strict=True):
        function = name.split(":")[1].split(".")[-1]
        assert document.startswith((f"def {function}(", f"async def {function}("))


def test_loads_are_identical(dataset: RawDataset) -> None:
    again = load_dataset("stdlib_retrieval", SETTINGS)
    assert again.test.x == dataset.test.x and again.train.pairs == dataset.train.pairs


def test_docstring_is_cut_out_and_trivial_functions_skipped() -> None:
    source = b'''
class A:
    @property
    def size(self):
        """Return the size of the thing in bytes.

        More text.
        """
        return 4  # bytes

    def stub(self):
        """A stub with nothing in it."""
        ...

def short(x): "Shares its line with code and is long enough."; return x
'''
    pairs = module_pairs("m.py", source, StdlibRetrievalSettings())
    assert [(p.qualname, p.query) for p in pairs] == [
        ("A.size", "Return the size of the thing in bytes."),
        ("short", "Shares its line with code and is long enough."),
    ]
    assert pairs[0].document == "def size(self):\n    return 4  # bytes"
    assert "Shares" not in pairs[1].document and pairs[1].document.startswith("def short(x)")

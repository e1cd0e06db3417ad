"""Docstring -> function retrieval over the CPython standard library.

A query is the first paragraph of a function's docstring; its answer is that function's source
with the docstring removed, so the answer never contains the query verbatim. The split is by
module file: a module's helpers and their near-duplicate docstrings stay in one split.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import logging
import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.manifest import STDLIB_ROOT
from green_deploy.zoo.data.settings import require, require_fractions, require_non_negative
from green_deploy.zoo.data.splitting import SPLITS, SplitName, split_of, take_in_order
from green_deploy.zoo.data.stdlib_files import stdlib_python_files

logger = logging.getLogger(__name__)

NAME = "stdlib_retrieval"
_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class StdlibRetrievalSettings:
    """``n_test`` / ``n_val`` / ``max_train`` are pair counts; lengths are in characters."""

    n_test: int = 500
    n_val: int = 100
    max_train: int | None = 2000
    min_query_words: int = 4
    max_query_chars: int = 200
    max_doc_chars: int = 600
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        require_non_negative(NAME, n_test=self.n_test, n_val=self.n_val, max_train=self.max_train)
        require(self.min_query_words >= 1, NAME, "min_query_words must be >= 1")
        require(self.max_query_chars >= 1 and self.max_doc_chars >= 1, NAME, "max_*_chars must be >= 1")
        require_fractions(NAME, self.val_fraction, self.test_fraction)

    def cap(self, split: SplitName) -> int | None:
        return {"train": self.max_train, "val": self.n_val, "test": self.n_test}[split]


@dataclass(frozen=True)
class RetrievalPair:
    module: str
    qualname: str
    query: str
    document: str


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, _Function]]:
    """Every function and method below ``node`` with its qualified name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _Function):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.<locals>.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _is_trivial(body: list[ast.stmt]) -> bool:
    """An empty, ``pass`` or ``...`` body: no code to retrieve."""
    return all(
        isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
        for stmt in body
    )


def _source_without_docstring(lines: list[str], function: _Function) -> str:
    """The function's source (dedented), its docstring's lines cut out."""
    docstring = function.body[0]
    assert docstring.end_lineno is not None and function.end_lineno is not None
    first, last = docstring.lineno - 1, docstring.end_lineno - 1
    alone = (
        docstring.lineno > function.lineno
        and not lines[first][: docstring.col_offset].strip()
        and not lines[last][docstring.end_col_offset or 0 :].strip()
    )
    if not alone:
        # A docstring sharing its line with other code: regenerate the source without it.
        stripped = copy.deepcopy(function)
        stripped.body = stripped.body[1:]
        stripped.decorator_list = []
        return ast.unparse(stripped)
    kept = lines[function.lineno - 1 : first] + lines[last + 1 : function.end_lineno]
    return textwrap.dedent("".join(kept)).strip()


def first_paragraph(docstring: str) -> str:
    return " ".join(docstring.strip().split("\n\n")[0].split())


def module_pairs(module: str, data: bytes, settings: StdlibRetrievalSettings) -> list[RetrievalPair]:
    """Every documented, non-trivial function of one module as a (query, document) pair."""
    source = importlib.util.decode_source(data)
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        logger.warning("skipping %s: %s", module, error)
        return []
    lines = source.splitlines(keepends=True)
    pairs = []
    for qualname, function in _functions(tree):
        docstring = ast.get_docstring(function)
        if not docstring or _is_trivial(function.body[1:]):
            continue
        query = first_paragraph(docstring)
        if len(query.split()) < settings.min_query_words:
            continue
        document = _source_without_docstring(lines, function)
        pairs.append(
            RetrievalPair(
                module, qualname, query[: settings.max_query_chars], document[: settings.max_doc_chars]
            )
        )
    return pairs


class _StdlibRetrieval:
    name = NAME
    root = STDLIB_ROOT
    settings_class = StdlibRetrievalSettings
    subset_keys: tuple[str, ...] = ()
    at_most_keys: tuple[str, ...] = ()

    def scan(self, settings: StdlibRetrievalSettings, root_path: Path) -> list[str]:
        return stdlib_python_files(root_path)

    def scan_settings(self, settings: StdlibRetrievalSettings) -> dict[str, Any]:
        return {}

    def needs(self, settings: StdlibRetrievalSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: StdlibRetrievalSettings) -> list[str]:
        return list(paths)

    def build(self, files: Mapping[str, bytes], settings: StdlibRetrievalSettings) -> RawDataset:
        pairs = [pair for module in sorted(files) for pair in module_pairs(module, files[module], settings)]
        # A repeated query or document would have two right answers (or leak across splits).
        queries = Counter(pair.query for pair in pairs)
        documents = Counter(pair.document for pair in pairs)
        unique = [p for p in pairs if queries[p.query] == 1 and documents[p.document] == 1]
        by_split: dict[SplitName, list[RetrievalPair]] = {split: [] for split in SPLITS}
        for pair in unique:
            by_split[split_of(pair.module, settings.val_fraction, settings.test_fraction)].append(pair)
        splits = {}
        modules = {}
        for split in SPLITS:
            chosen = take_in_order(by_split[split], lambda p: f"{p.module}:{p.qualname}", settings.cap(split))
            splits[split] = RawSplit([p.query for p in chosen], None, [p.document for p in chosen])
            modules[split] = [f"{p.module}:{p.qualname}" for p in chosen]
        extra = {
            "functions": modules,
            "n_candidates": len(pairs),
            "n_dropped_duplicates": len(pairs) - len(unique),
        }
        return RawDataset(
            name=NAME,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            extra=extra,
        )

    def describe(self, settings: StdlibRetrievalSettings) -> str:
        return "docstring -> function pairs from the CPython standard library, split by module file"


SOURCE = _StdlibRetrieval()

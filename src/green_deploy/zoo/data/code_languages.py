"""Which programming language a snippet is in, from source files of installed Python packages.

The root is the running interpreter's site-packages, pinned by ``requirements.txt``. Only
languages with enough non-test, non-minified files there are defaults: JavaScript, CSS, HTML,
shell and YAML have fewer than 25 usable files each, and ``.h`` is left out because C and C++
share it.

site-packages holds tens of thousands of candidate files, too many for a readable manifest, so
freezing keeps, per language and split, the first ``candidate_factor`` (1.25) x the split's cap
in sha1 order of the path, which keeps the manifest near 0.5 MB. Loading may lower a cap, or raise it up to that frozen number, without a
refreeze.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.manifest import PURELIB_ROOT
from green_deploy.zoo.data.settings import require, require_fractions, require_non_negative
from green_deploy.zoo.data.splitting import SPLITS, SplitName, order_key, split_of

NAME = "code_languages"
DEFAULT_LANGUAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("c", (".c",)),
    ("cpp", (".cc", ".cpp", ".cxx", ".hpp")),
    ("cython", (".pyx", ".pxd")),
    ("json", (".json",)),
    ("markdown", (".md",)),
    ("python", (".py",)),
)
TEST_DIRS = frozenset({"test", "tests", "testing"})
# Installed by creating the virtual environment, not by requirements.txt: their version (and
# files) depend on how and when the environment was made.
BOOTSTRAP_PACKAGES = ("_distutils_hack", "pip", "pkg_resources", "setuptools", "wheel")
_SKIPPED_DIRS = frozenset({"__pycache__"})


@dataclass(frozen=True)
class CodeLanguagesSettings:
    """Sizes in bytes; ``max_*_per_language`` cap each language within a split.

    ``skip_header_comment`` starts snippets after a leading licence comment: with the plain first
    bytes, most C++ files here open with one of three vendor licences, so their snippets are
    duplicates (dropped) and the rest teach the vendor, not the language.
    ``candidate_factor`` only matters when freezing: how many files beyond the caps the manifest
    keeps as headroom for larger caps.
    """

    languages: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_LANGUAGES
    snippet_bytes: int = 512
    skip_header_comment: bool = True
    min_bytes: int = 200
    max_mean_line_bytes: int = 200
    skip_test_dirs: bool = True
    excluded_packages: tuple[str, ...] = BOOTSTRAP_PACKAGES
    max_train_per_language: int = 400
    max_val_per_language: int = 60
    max_test_per_language: int = 150
    candidate_factor: float = 1.25
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        require(len(self.languages) >= 2, NAME, f"needs at least two languages, got {self.languages}")
        extensions = [ext for _, exts in self.languages for ext in exts]
        repeated = sorted(ext for ext, n in Counter(extensions).items() if n > 1)
        require(not repeated, NAME, f"extensions {repeated} belong to more than one language")
        require(
            all(ext.startswith(".") for ext in extensions),
            NAME,
            f"extensions must start with '.': {extensions}",
        )
        require(self.snippet_bytes >= 1, NAME, "snippet_bytes must be >= 1")
        require_non_negative(NAME, min_bytes=self.min_bytes, max_train=self.max_train_per_language)
        require_non_negative(NAME, max_val=self.max_val_per_language, max_test=self.max_test_per_language)
        require(self.max_mean_line_bytes >= 1, NAME, "max_mean_line_bytes must be >= 1")
        require(self.candidate_factor >= 1.0, NAME, "candidate_factor must be >= 1")
        require_fractions(NAME, self.val_fraction, self.test_fraction)

    def cap(self, split: SplitName) -> int:
        return {
            "train": self.max_train_per_language,
            "val": self.max_val_per_language,
            "test": self.max_test_per_language,
        }[split]

    def language_of(self, path: str) -> str | None:
        suffix = PurePosixPath(path).suffix
        return next((language for language, exts in self.languages if suffix in exts), None)


def is_minified(data: bytes, max_mean_line_bytes: int) -> bool:
    """Minified or generated one-liners: a mean line longer than ``max_mean_line_bytes``."""
    return len(data) / (data.count(b"\n") + 1) > max_mean_line_bytes


def header_comment_bytes(data: bytes) -> int:
    """Length of a file's leading comment block (licence headers, shebangs, blank lines).

    Language-agnostic on purpose: ``/* */`` blocks and lines starting ``//``, ``#!``, ``# `` or a
    bare ``#`` are skipped for every file, so the label does not decide what is cut. C's
    ``#include`` (no space) is code. A file that is all comment keeps its start (0).
    """
    offset = 0
    in_block = False
    for line in data.splitlines(keepends=True):
        stripped = line.strip()
        if in_block:
            in_block = b"*/" not in stripped
        elif stripped.startswith(b"/*"):
            in_block = b"*/" not in stripped[2:]
        elif stripped and stripped != b"#" and not stripped.startswith((b"//", b"#!", b"# ")):
            return offset
        offset += len(line)
    return 0


def snippet(data: bytes, snippet_bytes: int, skip_header_comment: bool = False) -> str:
    """The first ``snippet_bytes`` of a file (after its header comment if asked), as text."""
    start = header_comment_bytes(data) if skip_header_comment else 0
    return data[start : start + snippet_bytes].decode("utf-8", errors="replace")


def _walk(root_path: Path, skip_test_dirs: bool, excluded_packages: Sequence[str]) -> Iterator[str]:
    for directory, subdirs, names in os.walk(root_path):
        rel_dir = Path(directory).relative_to(root_path)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if d not in _SKIPPED_DIRS
            and not (skip_test_dirs and d in TEST_DIRS)
            and not (rel_dir == Path(".") and d in excluded_packages)
        )
        for name in sorted(names):
            yield (rel_dir / name).as_posix()


class _CodeLanguages:
    name = NAME
    root = PURELIB_ROOT
    settings_class = CodeLanguagesSettings
    subset_keys = ("languages",)
    at_most_keys = (
        "candidates_train_per_language",
        "candidates_val_per_language",
        "candidates_test_per_language",
    )

    def scan(self, settings: CodeLanguagesSettings, root_path: Path) -> list[str]:
        groups: dict[tuple[str, SplitName], list[str]] = defaultdict(list)
        for path in _walk(root_path, settings.skip_test_dirs, settings.excluded_packages):
            language = settings.language_of(path)
            if language is not None:
                groups[(language, split_of(path, settings.val_fraction, settings.test_fraction))].append(path)
        chosen = []
        for (_, split), paths in sorted(groups.items()):
            budget = int(settings.cap(split) * settings.candidate_factor)
            # Read files in sha1 order only until the budget is met: most are never opened.
            for path in sorted(paths, key=order_key):
                if budget <= 0:
                    break
                full = root_path / path
                if full.is_symlink() or not full.is_file() or full.stat().st_size < settings.min_bytes:
                    continue
                if is_minified(full.read_bytes(), settings.max_mean_line_bytes):
                    continue
                chosen.append(path)
                budget -= 1
        return sorted(chosen)

    def scan_settings(self, settings: CodeLanguagesSettings) -> dict[str, Any]:
        return {
            **self._filters(settings),
            "candidates_train_per_language": int(settings.max_train_per_language * settings.candidate_factor),
            "candidates_val_per_language": int(settings.max_val_per_language * settings.candidate_factor),
            "candidates_test_per_language": int(settings.max_test_per_language * settings.candidate_factor),
        }

    def needs(self, settings: CodeLanguagesSettings) -> dict[str, Any]:
        return {
            **self._filters(settings),
            "candidates_train_per_language": settings.max_train_per_language,
            "candidates_val_per_language": settings.max_val_per_language,
            "candidates_test_per_language": settings.max_test_per_language,
        }

    @staticmethod
    def _filters(settings: CodeLanguagesSettings) -> dict[str, Any]:
        return {
            "languages": {language: list(exts) for language, exts in settings.languages},
            "min_bytes": settings.min_bytes,
            "max_mean_line_bytes": settings.max_mean_line_bytes,
            "skip_test_dirs": settings.skip_test_dirs,
            "excluded_packages": sorted(settings.excluded_packages),
            "val_fraction": settings.val_fraction,
            "test_fraction": settings.test_fraction,
        }

    def wanted(self, paths: Sequence[str], settings: CodeLanguagesSettings) -> list[str]:
        return [path for path in paths if settings.language_of(path) is not None]

    def build(self, files: Mapping[str, bytes], settings: CodeLanguagesSettings) -> RawDataset:
        classes = tuple(language for language, _ in settings.languages)
        rows: list[tuple[str, str, SplitName, int]] = []  # (path, snippet, split, label)
        for path in sorted(files, key=order_key):
            language = settings.language_of(path)
            assert language is not None  # ``wanted`` kept only these
            split = split_of(path, settings.val_fraction, settings.test_fraction)
            text = snippet(files[path], settings.snippet_bytes, settings.skip_header_comment)
            rows.append((path, text, split, classes.index(language)))
        # Identical snippets (licence headers, generated stubs) in two splits or two languages
        # would leak or carry two labels: drop them everywhere; keep one copy otherwise.
        owners: dict[str, set[tuple[SplitName, int]]] = defaultdict(set)
        for _, text, split, label in rows:
            owners[text].add((split, label))
        kept: dict[tuple[SplitName, int], list[tuple[str, str]]] = defaultdict(list)
        seen: set[str] = set()
        for path, text, split, label in rows:
            if len(owners[text]) == 1 and text not in seen:
                seen.add(text)
                kept[(split, label)].append((path, text))
        splits = {}
        paths = {}
        for split in SPLITS:
            chosen = [
                (order_key(path), path, text, label)
                for label in range(len(classes))
                for path, text in kept[(split, label)][: settings.cap(split)]
            ]
            chosen.sort()
            splits[split] = RawSplit([c[2] for c in chosen], np.array([c[3] for c in chosen], dtype=np.int64))
            paths[split] = [c[1] for c in chosen]
        n_dropped = sum(1 for _, text, _, _ in rows if len(owners[text]) > 1)
        return RawDataset(
            name=NAME,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            classes=classes,
            extra={"files": paths, "n_dropped_shared_snippets": n_dropped},
        )

    def describe(self, settings: CodeLanguagesSettings) -> str:
        return f"snippets of {', '.join(lang for lang, _ in settings.languages)} files in this interpreter's site-packages"


SOURCE = _CodeLanguages()

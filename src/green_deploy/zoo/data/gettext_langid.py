"""Language identification of translated UI strings from compiled gettext catalogues.

Examples are the ``msgstr`` values of ``/usr/share/locale/<locale>/LC_MESSAGES/*.mo``, labelled by
the locale's language (``pt_BR`` -> ``pt``). The split is decided by the catalogue's domain
(``coreutils``), so one program's strings in every language land in the same split and a model
cannot score by having memorised that program's vocabulary.

Beyond within-language deduplication, two kinds of strings are dropped by default: strings left
equal to their English ``msgid`` (untranslated copies), and strings found in more than one
language (``Tuvalu``, ``OK``), whose label is ambiguous. A string found in catalogues of two
splits is dropped too.
"""

from __future__ import annotations

import gettext
import io
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from green_deploy.zoo.data.base import RawDataset, RawSplit
from green_deploy.zoo.data.settings import require, require_fractions, require_non_negative
from green_deploy.zoo.data.splitting import SPLITS, SplitName, order_key, split_of, take_in_order

logger = logging.getLogger(__name__)

NAME = "gettext_langid"
ROOT = "/usr/share/locale"
# The ten languages with the most catalogues here among those with Latin or Cyrillic script and
# 50+ catalogues each (pt counts pt and pt_BR).
DEFAULT_LANGUAGES = ("cs", "de", "es", "fr", "it", "nl", "pl", "pt", "ru", "sv")
_CONTEXT_SEPARATOR = "\x04"  # msgctxt and msgid are joined by EOT in a .mo key


@dataclass(frozen=True)
class GettextLangidSettings:
    """Lengths in characters; ``max_*_per_language`` cap each language within a split."""

    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    min_chars: int = 12
    max_chars: int = 200
    max_train_per_language: int | None = 3000
    max_val_per_language: int | None = 300
    max_test_per_language: int | None = 1000
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    drop_untranslated: bool = True
    drop_cross_language: bool = True

    def __post_init__(self) -> None:
        require(len(self.languages) >= 2, NAME, f"needs at least two languages, got {self.languages}")
        require(len(set(self.languages)) == len(self.languages), NAME, "languages repeat")
        for language in self.languages:
            require(
                language.isalpha() and language.islower(),
                NAME,
                f"{language!r} is not a language code like 'de'",
            )
        require_non_negative(
            NAME, min_chars=self.min_chars, max_train_per_language=self.max_train_per_language
        )
        require_non_negative(NAME, max_val=self.max_val_per_language, max_test=self.max_test_per_language)
        require(self.max_chars >= max(self.min_chars, 1), NAME, "max_chars must be >= min_chars and >= 1")
        require_fractions(NAME, self.val_fraction, self.test_fraction)

    def cap(self, split: SplitName) -> int | None:
        return {
            "train": self.max_train_per_language,
            "val": self.max_val_per_language,
            "test": self.max_test_per_language,
        }[split]


def language_of_locale(locale: str) -> str | None:
    """``pt_BR`` -> ``pt``; ``None`` for variants (``sr@latin``) and encodings (``de.UTF-8``)."""
    if "@" in locale or "." in locale:
        return None
    return locale.split("_", maxsplit=1)[0]


def catalogue_strings(data: bytes) -> list[tuple[str, str]]:
    """``(msgid, msgstr)`` of a .mo file, plural forms one by one, without the header entry."""
    translations = gettext.GNUTranslations(io.BytesIO(data))
    # GNUTranslations keeps the catalogue in ``_catalog``: the only stdlib parser of .mo files.
    catalog: dict[Any, str] = translations._catalog  # type: ignore[attr-defined]
    pairs: list[tuple[str, str]] = []
    for key, value in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key  # plurals are keyed (msgid, index)
        if msgid == "":
            continue
        msgid = msgid.split(_CONTEXT_SEPARATOR)[-1]
        pairs.extend((msgid, form) for form in value.split("\x00"))
    return pairs


def _text_key(language: str) -> Callable[[str], str]:
    """Order key of a text among ``language``'s candidates (``language`` bound now, not late)."""
    return lambda text: f"{language}\x00{text}"


class _GettextLangid:
    name = NAME
    root = ROOT
    settings_class = GettextLangidSettings
    subset_keys = ("languages",)
    at_most_keys: tuple[str, ...] = ()

    def scan(self, settings: GettextLangidSettings, root_path: Path) -> list[str]:
        paths: list[str] = []
        for locale_dir in sorted(root_path.iterdir()):
            if locale_dir.is_dir() and language_of_locale(locale_dir.name) in settings.languages:
                messages = locale_dir / "LC_MESSAGES"
                paths.extend(
                    f"{locale_dir.name}/LC_MESSAGES/{mo.name}"
                    for mo in sorted(messages.glob("*.mo"))
                    if mo.is_file()
                )
        return paths

    def scan_settings(self, settings: GettextLangidSettings) -> dict[str, Any]:
        return {"languages": sorted(settings.languages)}

    def needs(self, settings: GettextLangidSettings) -> dict[str, Any]:
        return self.scan_settings(settings)

    def wanted(self, paths: Sequence[str], settings: GettextLangidSettings) -> list[str]:
        return [path for path in paths if language_of_locale(path.split("/")[0]) in settings.languages]

    def build(self, files: Mapping[str, bytes], settings: GettextLangidSettings) -> RawDataset:
        classes = tuple(sorted(settings.languages))
        # Where each text occurs: its first domain per language, and its splits and languages
        # over all languages (a text in two splits leaks; in two languages, it is ambiguous).
        domain_of: dict[tuple[str, str], str] = {}
        splits_of: dict[str, set[SplitName]] = defaultdict(set)
        languages_of: dict[str, set[str]] = defaultdict(set)
        unparsable = []
        for path in sorted(files):
            language = str(language_of_locale(path.split("/")[0]))
            domain = PurePosixPath(path).stem
            try:
                pairs = catalogue_strings(files[path])
            except (OSError, UnicodeDecodeError, ValueError, LookupError) as error:
                # Deterministic: the bytes are pinned by the manifest, so the same files fail everywhere.
                logger.warning("skipping unparsable catalogue %s: %s", path, error)
                unparsable.append(path)
                continue
            split = split_of(domain, settings.val_fraction, settings.test_fraction)
            for msgid, msgstr in pairs:
                text = msgstr.strip()
                if len(text) < settings.min_chars or (settings.drop_untranslated and text == msgid.strip()):
                    continue
                text = text[: settings.max_chars]
                key = (language, text)
                if key not in domain_of or domain < domain_of[key]:
                    domain_of[key] = domain
                splits_of[text].add(split)
                languages_of[text].add(language)
        leaking = {text for text, splits in splits_of.items() if len(splits) > 1}
        ambiguous = (
            {text for text, langs in languages_of.items() if len(langs) > 1}
            if settings.drop_cross_language
            else set()
        )
        candidates: dict[tuple[SplitName, str], list[str]] = defaultdict(list)
        for language, text in domain_of:
            if text not in leaking and text not in ambiguous:
                candidates[(next(iter(splits_of[text])), language)].append(text)
        splits = {}
        domains = {}
        for split in SPLITS:
            rows: list[tuple[str, str, int, str]] = []
            for label, language in enumerate(classes):
                chosen = take_in_order(
                    candidates[(split, language)],
                    _text_key(language),
                    settings.cap(split),
                )
                rows.extend(
                    (order_key(f"{language}\x00{text}"), text, label, domain_of[(language, text)])
                    for text in chosen
                )
            rows.sort()
            splits[split] = RawSplit([r[1] for r in rows], np.array([r[2] for r in rows], dtype=np.int64))
            domains[split] = [r[3] for r in rows]
        extra = {
            "domains": domains,
            "unparsable_catalogues": unparsable,
            "n_dropped_cross_split": len(leaking),
            "n_dropped_cross_language": len(ambiguous),
        }
        return RawDataset(
            name=NAME,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            classes=classes,
            extra=extra,
        )

    def describe(self, settings: GettextLangidSettings) -> str:
        return f"gettext catalogues under {ROOT} for {', '.join(sorted(settings.languages))}, split by catalogue domain"


SOURCE = _GettextLangid()

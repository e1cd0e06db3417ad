"""Deterministic splits and orders from sha1 of stable keys (never Python's salted ``hash()``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

SplitName = Literal["train", "val", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")

_T = TypeVar("_T")
_HEX_DIGITS = 15  # 60 bits: enough resolution for a fraction, exact in a float


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def unit_interval(key: str, salt: str = "split") -> float:
    """A stable pseudo-uniform number in [0, 1) for ``key``; ``salt`` decorrelates uses."""
    return int(sha1_hex(f"{salt}\x00{key}")[:_HEX_DIGITS], 16) / 16**_HEX_DIGITS


def split_of(key: str, val_fraction: float, test_fraction: float) -> SplitName:
    """The split ``key`` (a file, a catalogue domain, a text) belongs to, by sha1."""
    u = unit_interval(key)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def order_key(key: str) -> str:
    """Sort key for choosing a capped subset; salted apart from ``split_of`` so the subset chosen
    inside a split is not biased towards one end of that split's hash range."""
    return sha1_hex(f"order\x00{key}")


def take_in_order(items: Iterable[_T], key: Callable[[_T], str], cap: int | None) -> list[_T]:
    """The first ``cap`` items in sha1 order of ``key(item)`` (all of them when ``cap`` is None)."""
    ordered = sorted(items, key=lambda item: order_key(key(item)))
    return ordered if cap is None else ordered[:cap]

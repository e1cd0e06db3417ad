"""Energy per operation and per memory access: Horowitz (ISSCC 2014, 45 nm), as data.

The values are those the estimate issue states: float add 0.2/0.4/0.9 pJ and float mul
0.6/1.1/3.7 pJ at 8/16/32 bits; memory 1.25/2.5/5.0 pJ (< 8 KB), 2.5/5.0/10.0 (< 32 KB),
12.5/25/50 (< 1 MB) and 250/500/1000 (> 1 MB) per access of an 8/16/32-bit word. Note the
paper's 8-bit arithmetic is *integer* (add 0.03 pJ, mul 0.2 pJ); the issue's 8-bit entries are
kept here as stated, and configuration can put the integer values in (``costs_from_config``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from green_deploy.errors import ConfigError, GreenDeployError

PJ_TO_J = 1e-12

HOROWITZ_ADD_PJ: dict[int, float] = {8: 0.2, 16: 0.4, 32: 0.9}
HOROWITZ_MUL_PJ: dict[int, float] = {8: 0.6, 16: 1.1, 32: 3.7}


class MissingCostError(GreenDeployError):
    """The cost table has no entry for an operation's bit width (e.g. 64-bit or 4-bit)."""


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy: used when the footprint is below ``below_bytes``
    (``math.inf`` for the last level); ``access_pj`` is pJ per access of a word, by bit width."""

    below_bytes: float
    access_pj: Mapping[int, float]


HOROWITZ_MEMORY: tuple[MemoryLevel, ...] = (
    MemoryLevel(8 * 1024, {8: 1.25, 16: 2.5, 32: 5.0}),
    MemoryLevel(32 * 1024, {8: 2.5, 16: 5.0, 32: 10.0}),
    MemoryLevel(1024 * 1024, {8: 12.5, 16: 25.0, 32: 50.0}),
    MemoryLevel(math.inf, {8: 250.0, 16: 500.0, 32: 1000.0}),
)


@dataclass(frozen=True)
class OperationCosts:
    """Energy in pJ of one add, one multiply and one memory access (read or write) of a word,
    by bit width; memory by the level the footprint falls in (first level it is below)."""

    add_pj_by_bits: Mapping[int, float] = field(default_factory=lambda: dict(HOROWITZ_ADD_PJ))
    mul_pj_by_bits: Mapping[int, float] = field(default_factory=lambda: dict(HOROWITZ_MUL_PJ))
    memory_levels: tuple[MemoryLevel, ...] = HOROWITZ_MEMORY

    def add_pj(self, bits: int) -> float:
        return _lookup(self.add_pj_by_bits, bits, "add")

    def mul_pj(self, bits: int) -> float:
        return _lookup(self.mul_pj_by_bits, bits, "multiply")

    def memory_level(self, footprint_bytes: float) -> int:
        """Index of the level a working set of ``footprint_bytes`` is served from."""
        for index, level in enumerate(self.memory_levels):
            if footprint_bytes < level.below_bytes:
                return index
        return len(self.memory_levels) - 1

    def memory_pj(self, bits: int, footprint_bytes: float) -> float:
        """pJ per access of a ``bits``-wide word from the level holding ``footprint_bytes``."""
        level = self.memory_levels[self.memory_level(footprint_bytes)]
        return _lookup(level.access_pj, bits, f"memory access (below {level.below_bytes} bytes)")


def _lookup(table: Mapping[int, float], bits: int, what: str) -> float:
    if bits not in table:
        raise MissingCostError(f"no {what} cost for {bits}-bit words; the table has {sorted(table)} bits")
    return float(table[bits])


HOROWITZ_45NM = OperationCosts()


def costs_from_config(raw: Mapping[str, Any] | None, base: OperationCosts = HOROWITZ_45NM) -> OperationCosts:
    """``base`` with the entries given in configuration replaced, e.g.::

    add_pj: {8: 0.03}            # per bit width; others keep the base values
    mul_pj: {8: 0.2}
    memory_pj:                   # replaces all levels; last one has below_bytes: null
      - {below_bytes: 8192, pj: {8: 1.25, 16: 2.5, 32: 5.0}}
      - {below_bytes: null, pj: {8: 250, 16: 500, 32: 1000}}
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"estimate costs must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"add_pj", "mul_pj", "memory_pj"})
    if unknown:
        raise ConfigError(f"estimate costs: unknown key(s) {unknown}; known: add_pj, mul_pj, memory_pj")
    add = {**base.add_pj_by_bits, **_bits_table(raw.get("add_pj"), "add_pj")}
    mul = {**base.mul_pj_by_bits, **_bits_table(raw.get("mul_pj"), "mul_pj")}
    levels = base.memory_levels
    if raw.get("memory_pj") is not None:
        levels = _memory_levels(raw["memory_pj"])
    return OperationCosts(add, mul, levels)


def _bits_table(value: Any, where: str) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"estimate costs: {where} must map bit widths to pJ, got {value!r}")
    table: dict[int, float] = {}
    for bits, pj in value.items():
        try:
            key = int(bits)
        except (TypeError, ValueError):
            raise ConfigError(f"estimate costs: {where} key {bits!r} is not a bit width") from None
        if isinstance(pj, bool) or not isinstance(pj, int | float) or pj < 0:
            raise ConfigError(f"estimate costs: {where}[{bits}] must be a non-negative number, got {pj!r}")
        table[key] = float(pj)
    return table


def _memory_levels(value: Any) -> tuple[MemoryLevel, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"estimate costs: memory_pj must be a non-empty list of levels, got {value!r}")
    levels = []
    for index, item in enumerate(value):
        where = f"memory_pj[{index}]"
        if not isinstance(item, Mapping) or set(item) != {"below_bytes", "pj"}:
            raise ConfigError(
                f"estimate costs: {where} must be {{below_bytes: ..., pj: {{bits: pJ}}}}, got {item!r}"
            )
        below = item["below_bytes"]
        if below is not None and (isinstance(below, bool) or not isinstance(below, int | float)):
            raise ConfigError(f"estimate costs: {where}.below_bytes must be a number or null, got {below!r}")
        levels.append(
            MemoryLevel(math.inf if below is None else float(below), _bits_table(item["pj"], where))
        )
    if [level.below_bytes for level in levels] != sorted(level.below_bytes for level in levels):
        raise ConfigError("estimate costs: memory_pj levels must be ordered by below_bytes")
    return tuple(levels)

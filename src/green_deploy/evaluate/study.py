"""A study as configuration: which cells (model x variant x target x batch size x device) to
measure, and the protocol every cell is measured with.

A cell's ``config_hash`` covers everything its numbers depend on: the variant's recipe and the
hashes of its files from the optimize pipeline, the target, batch size, device and the protocol. A cell whose hash is
already in the study's store is not measured again (resume); a changed setting gives new hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from green_deploy.config import parse_names, parse_settings
from green_deploy.deploy.targets import DEFAULT_TARGET, get_target, local_targets, target_names
from green_deploy.errors import ConfigError
from green_deploy.runtimes import DEVICES, runtimes_on

logger = logging.getLogger(__name__)

# PyTorch's int8 kernels (x86/fbgemm, qnnpack) exist for the CPU only
CPU_ONLY_TECHNIQUES = frozenset({"dynamic_int8", "static_int8"})


def runs_on(row: Mapping[str, Any], device: str) -> bool:
    """Whether a variant (a row of the variants table) can be served on ``device`` here: among
    the devices its technique recorded (a CUDA graph: ``cuda`` only), where its runtime runs."""
    recorded = [d for d in str(row.get("devices") or "").split(",") if d]
    if recorded and device not in recorded:
        return False
    if device == "cpu":
        return True
    techniques = set(str(row.get("technique") or "").split("+"))
    return row.get("runtime") in runtimes_on(device) and not techniques & CPU_ONLY_TECHNIQUES


@dataclass(frozen=True)
class ProtocolSettings:
    """How one cell is measured.

    Each server first measures its idle power for ``idle_s`` (so every response carries active,
    idle-subtracted energy); before each cell it takes ``warmup_s`` of unmeasured requests at
    the cell's batch size. A repetition runs batches back to back for at least
    ``repetition_s`` (long against the meter's resolution); repetitions go on until the ``confidence`` interval of J/inference is
    within ``ci_target`` of the mean (relative half-width), with at least ``min_repetitions``
    and at most ``max_repetitions`` or ``max_cell_s`` seconds, whichever comes first.
    """

    seed: int = 0
    warmup_s: float = 0.5
    idle_s: float = 0.5
    repetition_s: float = 0.5
    ci_target: float = 0.05
    confidence: float = 0.95
    min_repetitions: int = 3
    max_repetitions: int = 30
    max_cell_s: float = 30.0
    cooldown_s: float = 0.0

    def check(self) -> None:
        problems = []
        if not 0 < self.ci_target < 1:
            problems.append(f"ci_target must be in (0, 1), got {self.ci_target}")
        if not 0.5 <= self.confidence < 1:
            problems.append(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.min_repetitions < 2:
            problems.append(
                f"min_repetitions must be >= 2 (an interval needs two), got {self.min_repetitions}"
            )
        if self.max_repetitions < self.min_repetitions:
            problems.append(
                f"max_repetitions ({self.max_repetitions}) must be >= min_repetitions ({self.min_repetitions})"
            )
        for name in ("warmup_s", "idle_s", "repetition_s", "max_cell_s", "cooldown_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if problems:
            raise ConfigError("evaluate.protocol: " + "; ".join(problems))


@dataclass(frozen=True)
class TargetScope:
    """``evaluate.target_scope.<target>``: the models and variant ids measured on that target
    (empty: all of the study's), so that a costly target takes a few paired cells. A scope of a
    target the study does not measure is ignored (``--params evaluate.targets=local`` works)."""

    models: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()

    def admits(self, row: Mapping[str, Any]) -> bool:
        return (not self.models or row["model_id"] in self.models) and (
            not self.variants or row["variant_id"] in self.variants
        )


@dataclass(frozen=True)
class UnderLoad:
    """``evaluate.under_load``: cells measured again with ``concurrency`` clients sending at once
    (each one request after another), on these targets, models, variants and batch sizes (empty:
    all of the study's). The serving configuration matters there (``local`` batches requests
    that wait, ``local_unbatched`` does not) and is compared in RQ1.6; ``concurrency: 1``: none."""

    concurrency: int = 1
    targets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = ()

    def admits(self, row: Mapping[str, Any], target: str, batch_size: int) -> bool:
        return (
            self.concurrency > 1
            and (not self.targets or target in self.targets)
            and TargetScope(self.models, self.variants).admits(row)
            and (not self.batch_sizes or batch_size in self.batch_sizes)
        )


@dataclass(frozen=True)
class StudySettings:
    """``evaluate`` in ``parameters_evaluate.yml``.

    Accuracy is scored on at most ``accuracy_max_items`` items of each evaluation split (a
    stratified subset drawn with ``accuracy_seed``; ``None``: whole splits), in requests of
    ``accuracy_batch_size`` items; see ``evaluate.accuracy``. The machine's reference work
    (``evaluate.reference``) is measured at the start of a run, after every ``reference_every``
    groups of cells and at the end (0: never); it is not part of any cell's hash.
    """

    study: str = "default"
    models: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    batch_sizes: tuple[int, ...] = (1, 32)
    devices: tuple[str, ...] = ("cpu",)
    accuracy_batch_size: int = 256
    accuracy_max_items: int | None = None
    accuracy_seed: int = 0
    reference_every: int = 10
    country_iso: str = "DEU"
    price_per_kwh: float = 0.0
    work_dir: str = "data/07_model_output/evaluate"
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    target_scope: Mapping[str, TargetScope] = field(default_factory=dict)
    under_load: UnderLoad = field(default_factory=UnderLoad)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> StudySettings:
        raw = dict(raw or {})
        protocol = parse_settings(ProtocolSettings, raw.pop("protocol", None), "evaluate.protocol")
        protocol.check()
        load = dict(raw.pop("under_load", None) or {})
        for key in ("targets", "models", "variants"):
            if key in load:
                load[key] = parse_names(load[key], f"evaluate.under_load.{key}")
        if isinstance(load.get("batch_sizes"), int):
            load["batch_sizes"] = [load["batch_sizes"]]
        under_load = parse_settings(UnderLoad, load, "evaluate.under_load")
        scopes = raw.pop("target_scope", None) or {}
        if not isinstance(scopes, Mapping):
            raise ConfigError(
                f"evaluate.target_scope must map targets to {{models, variants}}, got {scopes!r}"
            )
        target_scope = {}
        for target, raw_scope in scopes.items():
            where = f"evaluate.target_scope.{target}"
            scope = dict(raw_scope or {})
            for key in ("models", "variants"):
                if key in scope:
                    scope[key] = parse_names(scope[key], f"{where}.{key}")
            target_scope[str(target)] = parse_settings(TargetScope, scope, where)
        for key in ("models", "variants", "targets", "devices"):
            if key in raw:
                raw[key] = parse_names(raw[key], f"evaluate.{key}") or getattr(cls, key, ())
        if isinstance(raw.get("batch_sizes"), int):
            raw["batch_sizes"] = [raw["batch_sizes"]]
        settings = replace(
            parse_settings(cls, raw, "evaluate"),
            protocol=protocol,
            target_scope=target_scope,
            under_load=under_load,
        )
        settings.check()
        return settings

    def check(self) -> None:
        for key, allowed in (("targets", target_names()), ("devices", DEVICES)):
            unknown = sorted(set(getattr(self, key)) - set(allowed))
            if unknown or not getattr(self, key):
                raise ConfigError(
                    f"evaluate.{key} must name some of {list(allowed)}; got {list(getattr(self, key))}"
                )
        if self.under_load.concurrency < 1:
            raise ConfigError(
                f"evaluate.under_load.concurrency must be >= 1, got {self.under_load.concurrency}"
            )
        unloaded = sorted(set(self.under_load.targets) - set(self.targets))
        if self.under_load.concurrency > 1 and unloaded:
            raise ConfigError(
                f"evaluate.under_load.targets names {unloaded}, which evaluate.targets does not measure: {list(self.targets)}"
            )
        unknown_targets = sorted(set(self.target_scope) - set(target_names()))
        if unknown_targets:
            raise ConfigError(
                f"evaluate.target_scope names {unknown_targets}, which are not targets; known: {list(target_names())}"
            )
        # the study chooses the device of a target on this machine; a cloud endpoint runs on its
        # instance type's
        on_machine = local_targets()
        clouds = sorted(set(self.targets) - set(on_machine))
        if clouds and set(self.devices) != {"cpu"}:
            raise ConfigError(
                f"evaluate.devices applies to the {' and '.join(on_machine)} targets; {clouds} run on "
                f"their instance type (deploy.<target>.instance_type): evaluate them in a study with devices [cpu]"
            )
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"evaluate.batch_sizes must be integers >= 1, got {list(self.batch_sizes)}")
        if self.accuracy_batch_size < 1:
            raise ConfigError(f"evaluate.accuracy_batch_size must be >= 1, got {self.accuracy_batch_size}")
        if self.reference_every < 0:
            raise ConfigError(
                f"evaluate.reference_every must be >= 0 (groups between two measurements of the machine's "
                f"reference; 0: never), got {self.reference_every}"
            )
        if self.accuracy_max_items is not None and self.accuracy_max_items < 1:
            raise ConfigError(
                f"evaluate.accuracy_max_items must be >= 1, or null for whole splits; got {self.accuracy_max_items}"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.study):
            raise ConfigError(
                f"evaluate.study names a folder and a run: letters, digits, _ . - only; got {self.study!r}"
            )


@dataclass(frozen=True)
class Cell:
    """One measurement: a variant on a target at a batch size on a device."""

    model_id: str
    variant_id: str
    target: str
    batch_size: int
    device: str
    variant_hash: str
    protocol_hash: str
    concurrency: int = 1

    @property
    def key(self) -> str:
        load = f"/c{self.concurrency}" if self.concurrency > 1 else ""
        return f"{self.model_id}/{self.variant_id}/{self.target}/bs{self.batch_size}/{self.device}{load}"

    @property
    def config_hash(self) -> str:
        fields = asdict(self)
        if self.concurrency == 1:  # cells measured before concurrency was a factor keep their hash
            del fields["concurrency"]
        return _sha256(fields)[:16]


def variant_hash(row: Mapping[str, Any]) -> str:
    """What a variant's cells depend on: its recipe (``config_sha256``) and the content of its
    files (``artifact_sha256``, JSON), so a variant rebuilt with other files is measured anew."""
    return _sha256(
        {"recipe": str(row.get("config_sha256") or ""), "files": str(row.get("artifact_sha256") or "")}
    )[:16]


def protocol_hash(settings: StudySettings) -> str:
    """What every cell of a study shares: the protocol and how accuracy is scored."""
    return _sha256(
        {
            "protocol": asdict(settings.protocol),
            "accuracy_batch_size": settings.accuracy_batch_size,
            "accuracy_items": [settings.accuracy_max_items, settings.accuracy_seed],
        }
    )[:16]


def expand_cells(variant_rows: Iterable[Mapping[str, Any]], settings: StudySettings) -> list[Cell]:
    """Every cell of the study, in configuration order (the protocol shuffles them)."""
    rows = [dict(r) for r in variant_rows]
    known_models = {r["model_id"] for r in rows}
    known_variants = {r["variant_id"] for r in rows}
    for key, known in (("models", known_models), ("variants", known_variants)):
        unknown = sorted(set(getattr(settings, key)) - known)
        if unknown:
            raise ConfigError(
                f"evaluate.{key} names {unknown}, which the variants table does not hold; it holds {sorted(known)}"
            )
        for target, scope in settings.target_scope.items():
            if target in settings.targets and set(getattr(scope, key)) - known:
                logger.warning(
                    "evaluate.target_scope.%s.%s names %s, which the variants table does not hold: "
                    "no cell of %s comes from them",
                    target,
                    key,
                    sorted(set(getattr(scope, key)) - known),
                    target,
                )
    shared = protocol_hash(settings)
    cells: list[Cell] = []
    off_device = 0
    not_served: dict[str, int] = {}
    for row in rows:
        if settings.models and row["model_id"] not in settings.models:
            continue
        if settings.variants and row["variant_id"] not in settings.variants:
            continue
        for target in settings.targets:
            if target in settings.target_scope and not settings.target_scope[target].admits(row):
                continue
            for device in settings.devices:
                if not runs_on(row, device):
                    off_device += 1
                    continue
                reason = get_target(target).cannot_serve(str(row.get("runtime") or ""), device)
                if reason is not None:
                    not_served[reason] = not_served.get(reason, 0) + 1
                    continue
                for batch_size in settings.batch_sizes:
                    load = settings.under_load
                    concurrencies = [1, load.concurrency] if load.admits(row, target, batch_size) else [1]
                    cells.extend(
                        Cell(
                            model_id=str(row["model_id"]),
                            variant_id=str(row["variant_id"]),
                            target=target,
                            batch_size=int(batch_size),
                            device=device,
                            variant_hash=variant_hash(row),
                            protocol_hash=shared,
                            concurrency=concurrency,
                        )
                        for concurrency in concurrencies
                    )
    if off_device:
        logger.info(
            "%d variant x target x device combinations left out: they do not run on that device (the "
            "devices each variant records; cuda: PyTorch runtime only, without %s)",
            off_device,
            " or ".join(sorted(CPU_ONLY_TECHNIQUES)),
        )
    for reason, count in not_served.items():
        logger.info("%d variant x device combinations left out: %s", count, reason)
    return cells


CELL_FIELDS = tuple(f.name for f in fields(Cell))


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()

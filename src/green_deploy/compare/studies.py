"""Two studies side by side: their cells matched, what differs between how they were measured,
and a verdict per matched cell (``verdicts``), with the outputs a pull request needs.

A study is read from its folder (``<evaluate.work_dir>/<study>``, the evaluate pipeline's store:
every cell with its repetitions). Cells match by model, variant and its recipe (technique and
steps), target, batch size, device and concurrency; cells of one study only are listed, never
dropped silently. Guard rails: two studies measured on different machines, with different
meters or protocols are refused unless ``allow_differences``, and the summary says what differs.

Drift: each study's measurements of the machine's reference work (``evaluate.reference``) give
how the machine moved between them; it is divided out of every ratio (``verdicts``), and the
summary says so, or says that it could not be (a study measured before references existed).

Accuracy: the candidate's minus the baseline's, with Newcombe's interval from the two stored
Wilson (or bootstrap) intervals; "lower" when the whole interval is below zero.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.compare.verdicts import (
    ALPHA,
    DEFAULT_MARGIN,
    IMPROVED,
    INCONCLUSIVE,
    REGRESSED,
    CellVerdict,
    Drift,
    between_run_scatter,
    verdicts,
)
from green_deploy.errors import ArtifactError, ConfigError, GreenDeployError

MATCH_KEYS = ("model_id", "variant_id", "technique", "steps", "target", "batch_size", "device", "concurrency")
# what must be the same for the J/inference of two studies to be comparable
MEASURED_WITH = {
    "machine": ("instance_type",),
    "meters": ("cpu_source", "gpu_source", "dram_source"),
    "protocol": ("protocol_hash",),
}
FAIL_ON = ("energy", "accuracy", "both", "none")
MLFLOW_PREFIX = "mlflow:"


@dataclass(frozen=True)
class Study:
    """One study's cells: ``cells[key] = (row, J/inference of each repetition)``, and the J per
    unit of the machine's reference work, the repetitions of each time it was measured
    (``evaluate.reference``, its current version only; empty for a study measured before)."""

    name: str
    cells: Mapping[str, tuple[Mapping[str, Any], list[float]]]
    reference: list[list[float]] = field(default_factory=list)

    @classmethod
    def from_folder(cls, folder: Path | str) -> Study:
        """The study stored in ``folder`` (its ``cells/`` from the evaluate pipeline)."""
        from green_deploy.evaluate.reference import VERSION as REFERENCE_VERSION
        from green_deploy.evaluate.store import StudyStore

        folder = Path(folder)
        if not (folder / "cells").is_dir():
            raise ArtifactError(
                f"{folder} holds no study (no cells/ folder); give a study folder such as "
                "data/07_model_output/evaluate/default"
            )
        cells = {}
        for stored in StudyStore(folder).cells():
            row = stored["row"]
            energies = [float(r["energy_per_item_j"]) for r in stored["repetitions"]]
            cells[cell_key(row)] = (row, energies)
        if not cells:
            raise ArtifactError(f"{folder} holds no measured cell yet")
        store = StudyStore(folder)
        reference = [
            [float(value) for value in run["energy_per_unit_j"]]
            for run in store.references()
            if run["version"] == REFERENCE_VERSION
        ]
        return cls(str(folder), cells, reference)

    @classmethod
    def from_mlflow(cls, tracking_uri: str, run: str) -> Study:
        """The study logged under an MLflow parent run, given by its run id or its study name
        (the ``green_deploy.study`` tag of a parent run of kind ``study``; the newest such)."""
        from green_deploy.compare.mlflow_studies import read_study

        name, rows, reference = read_study(tracking_uri, run)
        cells = {cell_key(row): (row, energies) for row, energies in rows}
        if not cells:
            raise ArtifactError(f"MLflow run {run!r} at {tracking_uri} has no cell runs")
        return cls(name, cells, reference)

    @classmethod
    def load(cls, where: str, tracking_uri: str) -> Study:
        """A study folder, or ``mlflow:<parent run id or study name>`` in ``tracking_uri``."""
        if where.startswith(MLFLOW_PREFIX):
            return cls.from_mlflow(tracking_uri, where.removeprefix(MLFLOW_PREFIX))
        return cls.from_folder(where)


@dataclass(frozen=True)
class StudyComparison:
    """Everything ``compare`` reports."""

    baseline: str
    candidate: str
    margin: float
    alpha: float
    verdicts: list[CellVerdict]
    accuracy: dict[str, dict[str, Any]]
    only_baseline: list[str]
    only_candidate: list[str]
    differences: dict[str, list[str]] = field(default_factory=dict)
    drift: dict[str, float] | None = None  # the machine's drift divided out: ratio and its 95% interval
    scatter: float | None = None  # cells' between-run scatter (log-scale sd) added to every cell

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for verdict in self.verdicts:
            counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
        return counts

    def accuracy_lower(self) -> list[str]:
        return [key for key, change in self.accuracy.items() if change["change"] == "lower"]

    def failed(self, fail_on: str) -> bool:
        """Whether CI should fail: a regressed cell (``energy``), a lower accuracy (``accuracy``)."""
        energy = any(v.verdict == REGRESSED for v in self.verdicts)
        accuracy = bool(self.accuracy_lower())
        return {"energy": energy, "accuracy": accuracy, "both": energy or accuracy, "none": False}[fail_on]

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "verdicts"},
            "verdicts": [v.to_dict() for v in self.verdicts],
            "counts": self.counts(),
        }


@dataclass(frozen=True)
class CompareSettings:
    """``compare`` in ``parameters_compare.yml``: the two studies (a study folder, or
    ``mlflow:<parent run id or study name>``), the equivalence margin, the tests' level, what
    fails the run (``FAIL_ON``), whether studies measured differently may be compared, and where
    the Markdown and JSON go."""

    baseline: str | None = None
    candidate: str | None = None
    margin: float = DEFAULT_MARGIN
    alpha: float = ALPHA
    fail_on: str = "both"
    allow_differences: bool = False
    out: str = "data/08_reporting/compare"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> CompareSettings:
        from green_deploy.config import parse_settings

        settings = parse_settings(cls, raw or {}, "compare")
        if not settings.baseline or not settings.candidate:
            raise ConfigError(
                "compare.baseline and compare.candidate name the two studies: a study folder "
                "(data/07_model_output/evaluate/<study>) or mlflow:<parent run id or study name>, e.g. "
                '`kedro run --pipeline=compare --params "compare.baseline=mlflow:main,compare.candidate=mlflow:pr-42"`'
            )
        if settings.fail_on not in FAIL_ON:
            raise ConfigError(f"compare.fail_on must be one of {list(FAIL_ON)}, got {settings.fail_on!r}")
        if not 0 < settings.margin < 1 or not 0 < settings.alpha < 0.5:
            raise ConfigError(
                f"compare.margin must be in (0, 1) and compare.alpha in (0, 0.5); got {settings.margin}, {settings.alpha}"
            )
        return settings


class RegressionFound(GreenDeployError):
    """The candidate regressed where ``fail_on`` says it must not (``kedro run`` exits 1)."""


def cell_key(row: Mapping[str, Any]) -> str:
    """The matching key of a cell row (from a study folder, or MLflow's text parameters)."""
    parts = []
    for name in MATCH_KEYS:
        value = "" if row.get(name) is None else str(row[name])
        if name == "concurrency" and value in ("", "1"):
            continue
        parts.append(f"{name}={value}")
    return " ".join(parts)


def compare_studies(
    baseline: Study,
    candidate: Study,
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
    allow_differences: bool = False,
) -> StudyComparison:
    """Match the two studies' cells and give each matched cell its verdict; a ``ConfigError``
    when they were measured differently and ``allow_differences`` is off."""
    matched = sorted(set(baseline.cells) & set(candidate.cells))
    if not matched:
        raise ConfigError(
            f"no cell of {candidate.name} matches one of {baseline.name} (by {', '.join(MATCH_KEYS)})"
        )
    differences = _differences(baseline, candidate, matched)
    if differences and not allow_differences:
        described = "; ".join(f"{what}: {', '.join(values)}" for what, values in differences.items())
        raise ConfigError(
            f"the studies were measured differently ({described}); their J/inference are not comparable. "
            "Pass --allow-differences (compare.allow_differences) to compare them anyway."
        )
    cells = [(key, baseline.cells[key][1], candidate.cells[key][1]) for key in matched]
    drift = machine_drift(baseline, candidate)
    scatter = between_run_scatter(cells, drift)
    return StudyComparison(
        baseline=baseline.name,
        candidate=candidate.name,
        margin=margin,
        alpha=alpha,
        verdicts=verdicts(cells, margin, alpha, drift, scatter),
        accuracy={key: accuracy_change(baseline.cells[key][0], candidate.cells[key][0]) for key in matched},
        only_baseline=sorted(set(baseline.cells) - set(candidate.cells)),
        only_candidate=sorted(set(candidate.cells) - set(baseline.cells)),
        differences=differences,
        drift=None if drift is None else _described(drift),
        scatter=scatter,
    )


def machine_drift(baseline: Study, candidate: Study) -> Drift | None:
    """How the machine moved between the two studies: Welch on the medians of their reference
    measurements, each study's outliers left out (beyond 3 robust deviations from its median: a
    measurement disturbed by a burst of other work in the process, e.g. at a run's start);
    ``None`` where either study keeps fewer than two (measured before ``evaluate.reference``)."""
    kept = [_typical(study.reference) for study in (baseline, candidate)]
    if any(len(values) < 2 for values in kept):
        return None
    return Drift.between(kept[0], kept[1])


def _typical(measurements: list[list[float]]) -> list[float]:
    """Each measurement's median, without those beyond 3 robust deviations of the study's median."""
    medians = np.array([float(np.median(m)) for m in measurements if m])
    if len(medians) < 3:
        return medians.tolist()
    logs = np.log(medians)
    deviation = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
    if deviation == 0:
        return medians.tolist()
    return medians[np.abs(logs - np.median(logs)) <= 3 * deviation].tolist()


def _described(drift: Drift) -> dict[str, float]:
    low, high = drift.interval()
    return {"ratio": math.exp(drift.log_ratio), "low": low, "high": high}


def accuracy_change(base: Mapping[str, Any], cand: Mapping[str, Any]) -> dict[str, Any]:
    """Candidate minus baseline accuracy with Newcombe's interval from the two stored intervals."""
    p1, l1, u1 = (float(base[k]) for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high"))
    p2, l2, u2 = (float(cand[k]) for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high"))
    difference = p2 - p1
    low = difference - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = difference + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    change = "lower" if high < 0 else "higher" if low > 0 else "unchanged"
    return {
        "difference": difference,
        "low": low,
        "high": high,
        "change": change,
        "metric": base.get("metric"),
    }


def markdown_summary(comparison: StudyComparison, limit: int = 15) -> str:
    """A pull-request comment: the counts, then the cells that changed or could not be decided."""
    counts = comparison.counts()
    lines = [
        f"### green-deploy compare: {comparison.candidate} against {comparison.baseline}",
        "",
        f"{len(comparison.verdicts)} matched cells: "
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in (REGRESSED, IMPROVED, "equivalent", INCONCLUSIVE))
        + f" (J/inference, equivalence margin ±{comparison.margin:.0%}, Holm-adjusted at {comparison.alpha}).",
    ]
    if comparison.drift is None:
        lines.append(
            "**Machine drift not separated**: a study lacks measurements of the reference work (measured "
            "before `evaluate.reference` existed), so a change of the machine between the runs reads as a "
            "change of every cell."
        )
    else:
        d = comparison.drift
        lines.append(
            f"Machine drift divided out: the same reference work cost {d['ratio']:.3f}x "
            f"[{d['low']:.3f}, {d['high']:.3f}] in the candidate's run."
        )
    if comparison.scatter is None:
        lines.append("Between-run scatter of single cells: not estimated (fewer than 8 matched cells).")
    else:
        lines.append(
            f"Single cells move between runs by ±{100 * math.expm1(comparison.scatter):.1f}% (one sd) beyond "
            "their repetitions, estimated from the matched cells: added to every cell's interval."
        )
    lower = comparison.accuracy_lower()
    lines.append(f"Accuracy lower in {len(lower)} cell(s)." if lower else "No cell's accuracy is lower.")
    if comparison.only_baseline or comparison.only_candidate:
        lines.append(
            f"Not matched: {len(comparison.only_baseline)} cell(s) only in the baseline, "
            f"{len(comparison.only_candidate)} only in the candidate (listed in the JSON)."
        )
    if comparison.differences:
        lines.append(
            "Measured differently (allowed): "
            + "; ".join(f"{what}: {', '.join(values)}" for what, values in comparison.differences.items())
        )
    shown = [v for v in comparison.verdicts if v.verdict != "equivalent" or v.key in lower]
    shown.sort(
        key=lambda v: (
            {REGRESSED: 0, IMPROVED: 1, INCONCLUSIVE: 2}.get(v.verdict, 3),
            -abs(math.log(v.ratio)),
        )
    )
    if shown:
        lines += [
            "",
            "| cell | verdict | J/inference ratio [CI] | accuracy change (pp) | repetitions needed |",
            "|---|---|---|---|---|",
        ]
        for verdict in shown[:limit]:
            accuracy = comparison.accuracy[verdict.key]
            lines.append(
                f"| {verdict.key} | {verdict.verdict} | {verdict.ratio:.3f} [{verdict.ratio_low:.3f}, {verdict.ratio_high:.3f}] "
                f"| {100 * accuracy['difference']:+.2f} ({accuracy['change']}) | {verdict.repetitions_needed or ''} |"
            )
        if len(shown) > limit:
            lines.append(f"| ... {len(shown) - limit} more in the JSON | | | | |")
    return "\n".join(lines) + "\n"


def write_outputs(comparison: StudyComparison, folder: Path | str) -> tuple[Path, Path]:
    """``compare.md`` and ``compare.json`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    markdown, data = folder / "compare.md", folder / "compare.json"
    markdown.write_text(markdown_summary(comparison))
    data.write_text(json.dumps(comparison.to_dict(), indent=1, default=str))
    return markdown, data


def _differences(baseline: Study, candidate: Study, matched: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for what, columns in MEASURED_WITH.items():
        for column in columns:
            before = {_measured_with(baseline.cells[k][0].get(column)) for k in matched}
            after = {_measured_with(candidate.cells[k][0].get(column)) for k in matched}
            if before != after:
                found.setdefault(what, []).append(
                    f"{column} {', '.join(sorted(before))} -> {', '.join(sorted(after))}"
                )
    return found


def _measured_with(value: Any) -> str:
    """A setting as compared: the in-process target names its process (``pid N``), not a machine."""
    return re.sub(r"^pid \d+(, )?", "", str(value))

"""Two real comparisons of studies measured on this machine, for bench/results/compare.md.

The same study configuration (local target, four zoo models in both frameworks, batch 1 and 32)
measured three times in a row: ``run_a`` (Keras variants served as traced graphs), ``run_eager``
(Keras variants served eagerly, as before graph serving: a real serving change, PyTorch cells
untouched) and ``run_b`` (graph again: nothing changed but the time). For each comparison it
writes what ``green-deploy compare`` writes, and how the machine's reference work moved against
the cells' raw ratios (does dividing out the reference remove the drift?).

    python bench/compare_studies.py --work data/07_model_output/evaluate --out bench/results
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from green_deploy.compare.studies import Study, compare_studies, markdown_summary  # noqa: E402

COMPARISONS = (
    ("run_a", "run_b", "nothing changed, measured later"),
    ("run_a", "run_eager", "Keras variants served eagerly instead of as graphs"),
)


def raw_ratios(baseline: Study, candidate: Study) -> dict[str, list[float]]:
    """Per framework, each matched cell's ratio of geometric means before any drift correction."""
    by_framework: dict[str, list[float]] = {}
    for key in sorted(set(baseline.cells) & set(candidate.cells)):
        row, base = baseline.cells[key]
        cand = candidate.cells[key][1]
        ratio = math.exp(statistics.fmean(map(math.log, cand)) - statistics.fmean(map(math.log, base)))
        by_framework.setdefault(str(row.get("framework")), []).append(ratio)
    return by_framework


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines = [
        "# Comparing studies: two real comparisons on this machine",
        "",
        "Written by `python bench/compare_studies.py --work data/07_model_output/evaluate --out bench/results`; "
        "each comparison is what `green-deploy compare <baseline> <candidate>` prints. The three studies: "
        '`kedro run --pipeline=evaluate --params "evaluate.targets=local,evaluate.under_load.concurrency=1,'
        "evaluate.models=resnet_fmnist vit_fmnist lstm_langid ngram_langid,evaluate.study=<run>,"
        'deploy.local.keras_mode=<graph|eager>"`, run_a (graph), run_eager (eager), run_b (graph), one after '
        "the other on this 2-core VM (energy ESTIMATED from CPU time, the same way in every run).",
        "",
    ]
    for base_name, cand_name, what in COMPARISONS:
        baseline, candidate = (
            Study.from_folder(args.work / base_name),
            Study.from_folder(args.work / cand_name),
        )
        comparison = compare_studies(baseline, candidate)
        lines += [f"## {cand_name} against {base_name}: {what}", ""]
        drift = comparison.drift
        lines.append(
            "Raw ratios before dividing out the machine's drift (median, quartiles), per framework: "
            + "; ".join(
                f"{framework} {statistics.median(r):.3f} [{statistics.quantiles(r, n=4)[0]:.3f}, "
                f"{statistics.quantiles(r, n=4)[2]:.3f}] over {len(r)} cells"
                for framework, r in raw_ratios(baseline, candidate).items()
            )
            + (
                f". The reference work: {drift['ratio']:.3f}x [{drift['low']:.3f}, {drift['high']:.3f}] "
                f"({len(baseline.reference)} and {len(candidate.reference)} repetitions)."
                if drift
                else ". No reference in one of the studies."
            )
        )
        counts: dict[str, dict[str, int]] = {}
        for verdict in comparison.verdicts:
            framework = str(baseline.cells[verdict.key][0].get("framework"))
            counts.setdefault(framework, {}).setdefault(verdict.verdict, 0)
            counts[framework][verdict.verdict] += 1
        lines += [
            "",
            "Verdicts by framework: "
            + "; ".join(
                f"{framework}: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(c.items()))
                for framework, c in sorted(counts.items())
            )
            + ".",
            "",
            markdown_summary(comparison, limit=25),
            "",
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

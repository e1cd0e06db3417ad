"""Write bench/results/evaluate_cpu.md from the evaluate pipeline's tables (run
`kedro run --env full --pipeline=evaluate` first, timing it).

Usage: python bench/evaluate_report.py --wall-s <seconds the kedro run took> [--command "..."]
       [--log <the run's console log, for where the time went>] [--results-dir data/full]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from green_deploy.evaluate.summary import accuracy_provenance, markdown_table, summary_markdown

PROJECT = Path(__file__).resolve().parents[1]
OUTPUT = PROJECT / "bench/results/evaluate_cpu.md"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cell_table(results: pd.DataFrame) -> pd.DataFrame:
    r = results.sort_values(["model_id", "framework", "variant_id", "batch_size"])
    half_width = r.energy_ci_relative_half_width * 100
    return pd.DataFrame(
        {
            "model": r.model_id,
            "variant": r.variant_id,
            "runtime": r.runtime,
            "bs": r.batch_size,
            "mJ/inf": r.energy_per_item_j * 1e3,
            "±CI %": half_width,
            "reps": r.n_repetitions,
            "CI ok": r.ci_reached.map({True: "yes", False: "no"}),
            "active mJ/inf": r.active_energy_per_item_j * 1e3,
            "CV %": r.energy_cv * 100,
            "p50 ms": r.latency_p50_ms,
            "p99 ms": r.latency_p99_ms,
            "items/s": r.throughput_items_per_s,
            "metric": r.metric,
            "value": r.accuracy,
            "95% CI": [f"[{low:.4f}, {high:.4f}]" for low, high in zip(r.accuracy_ci_low, r.accuracy_ci_high, strict=True)],
            "items": r.accuracy_n_items,
            "mgCO2e/1000": r.carbon_g_per_1000 * 1e3,
            "MB": r.size_on_disk_bytes / 1e6,
            "MMACs": r.macs / 1e6,
        }
    )


PHASES = re.compile(r"(\w+)/(\w+) on \w+: (deploy [\d.]+ s.*?stop [\d.]+ s)")


def load_tables(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evaluate pipeline's results and repetitions tables of a study's results_dir."""
    return (
        pd.read_parquet(results_dir / "07_model_output/evaluation_results.parquet"),
        pd.read_parquet(results_dir / "07_model_output/evaluation_repetitions.parquet"),
    )


def estimate_notes(results: pd.DataFrame) -> list[str]:
    """What the energy figures are on this machine, and how precise the cells came out."""
    stopped = results.stopped_by.value_counts().to_dict()
    cv = results.energy_cv * 100
    return [
        "**Energy here is an estimate** (CPU time x TDP share per thread, resident memory x 0.375 W/GB): this machine "
        "has no RAPL counters and no GPU; every row says so (`energy_measured = false`, sources in the table "
        "`evaluation_results.parquet`). Its repetitions are precise (the CI rule) but not accurate: the H100 run "
        "(evaluate_h100.md) measures with the NVML energy counter.",
        "",
        f"- CI rule: repeat until the 95% CI of J/inference is within ±{results.ci_target.iloc[0] * 100:.0f}% "
        f"of the mean; reached in **{int(results.ci_reached.sum())} of {len(results)}** cells "
        f"(stopped by: {', '.join(f'{k} {v}' for k, v in sorted(stopped.items()))}).",
        f"- Repetitions per cell: median {results.n_repetitions.median():.0f}, max {results.n_repetitions.max()}; "
        f"CV of J/inference across repetitions: median {cv.median():.1f}%, p90 {cv.quantile(0.9):.1f}%, max {cv.max():.1f}%.",
        f"- Serving paths: {'; '.join(f'{k} {v}' for k, v in sorted(results.drop_duplicates(['model_id', 'variant_id']).serving_path.value_counts().items()))} variants.",
        "",
    ]


def time_breakdown(log: Path, results: pd.DataFrame) -> list[str]:
    """Seconds per phase (the runner logs one line per variant), by runtime, and the slowest
    accuracy passes."""
    text = re.sub(r"\s+", " ", log.read_text())
    rows = []
    for model_id, variant_id, phases in PHASES.findall(text):
        for phase, seconds in re.findall(r"([a-z][a-z -]*?) ([\d.]+) s", phases):
            rows.append({"model_id": model_id, "variant_id": variant_id, "phase": phase.strip(", "), "s": float(seconds)})
    if not rows:
        return []
    times = pd.DataFrame(rows)
    runtimes = results.drop_duplicates(["model_id", "variant_id"]).set_index(["model_id", "variant_id"]).runtime
    times["runtime"] = [runtimes.get((m, v), "?") for m, v in zip(times.model_id, times.variant_id, strict=True)]
    by_phase = times.pivot_table(index="runtime", columns="phase", values="s", aggfunc="sum", fill_value=0.0)
    by_phase.loc["all"] = by_phase.sum()
    by_phase["total"] = by_phase.sum(axis=1)
    slowest = times[times.phase == "accuracy"].nlargest(8, "s")
    return [
        "## Where the evaluate time went",
        "",
        f"Seconds per phase over {times.groupby(['model_id', 'variant_id']).ngroups} variants (from the runner's "
        "log line per variant; the rest of the wall time is Kedro's start, loading the test splits and the tables):",
        "",
        markdown_table(by_phase.reset_index().round(1)),
        "",
        "Slowest accuracy passes: "
        + "; ".join(f"{r.model_id}/{r.variant_id} {r.s:.0f} s" for r in slowest.itertuples())
        + ".",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wall-s", type=float, required=True)
    parser.add_argument("--command", default="kedro run --pipeline=evaluate")
    parser.add_argument("--log", type=Path, help="the run's console log (for where the time went)")
    parser.add_argument("--note", default="", help="a paragraph about this run, printed under the wall time")
    parser.add_argument("--results-dir", default="data/full", help="the study's results_dir (globals.yml)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    results, repetitions = load_tables(PROJECT / args.results_dir)
    lines = [
        "# The measured study on CPU: energy, latency, accuracy and carbon of every variant",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores ({_cpu_model()}), no GPU, "
        f"Python {platform.python_version()}; every variant served by its own local server on loopback.",
        "",
        f"Command: `{args.command}` (from an empty study folder), then `python bench/evaluate_report.py "
        f"--wall-s {args.wall_s:.0f}`.",
        f"Wall time: **{args.wall_s:.0f} s** for {len(results)} cells ({results.groupby(['model_id', 'variant_id', 'target']).ngroups} "
        f"variant deployments x {results.batch_size.nunique()} batch sizes), {len(repetitions)} repetitions, "
        f"{int(results.n_requests.sum()):,} measured requests; server start, warm-up and the accuracy passes "
        f"included (accuracy {accuracy_provenance(results)}).",
        *(["", args.note] if args.note else []),
        "",
        *estimate_notes(results),
        *(time_breakdown(args.log, results) if args.log else []),
        "## Summary",
        "",
        summary_markdown(results, len(results), 0, 0).split("\n", 1)[1],
        "## Every cell",
        "",
        markdown_table(_cell_table(results)),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(args.output.read_text())  # noqa: T201  (a benchmark prints its numbers)


if __name__ == "__main__":
    main()

"""Write bench/results/default_study.md: the quick default study (`make study`) from a fresh clone,
timed, with where its time went and what it answered.

Usage, in a fresh clone with the machine otherwise idle:

    /usr/bin/time -f %e -o setup.time make setup
    COLUMNS=200 /usr/bin/time -f %e -o study.time make study > study.log 2>&1
    .venv/bin/python bench/default_study.py --setup-s $(cat setup.time) --study-s $(cat study.time) \\
        --log study.log

(``COLUMNS`` keeps Kedro's log lines whole, so the per-variant timings can be read back.)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from evaluate_report import _cpu_model, estimate_notes, load_tables, time_breakdown

from green_deploy.evaluate.summary import accuracy_provenance, markdown_table, summary_markdown

PROJECT = Path(__file__).resolve().parents[1]
OUTPUT = PROJECT / "bench/results/default_study.md"
TARGET_S = 900


def pipeline_times(log: str) -> tuple[dict[str, float], float | None]:
    """The run's seconds per pipeline, from the line the project's timing hook logs at the end."""
    match = re.search(r"time by pipeline: (.*?); run ([\d.]+) s", log)
    if not match:
        return {}, None
    parts = dict(re.findall(r"(\w+) ([\d.]+) s", match.group(1)))
    return {name: float(seconds) for name, seconds in parts.items()}, float(match.group(2))


def node_times(log: str) -> pd.DataFrame:
    """Each node's wall time (``node <namespace>.<name> took N s``), by model and pipeline."""
    rows = [
        {"node": name, "s": float(seconds)} for name, seconds in re.findall(r"node ([\w.]+) took ([\d.]+) s", log)
    ]
    table = pd.DataFrame(rows, columns=["node", "s"])
    table["model"] = table.node.str.rpartition(".")[0].replace("", "-")
    table["step"] = table.node.str.rpartition(".")[2]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup-s", type=float, required=True, help="wall time of `make setup`")
    parser.add_argument("--study-s", type=float, required=True, help="wall time of `make study`")
    parser.add_argument("--log", type=Path, required=True, help="the console log of `make study`")
    parser.add_argument("--results-dir", default="data")
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    text = re.sub(r"\s+", " ", args.log.read_text())
    by_pipeline, run_s = pipeline_times(text)
    nodes = node_times(text)
    results, _ = load_tables(PROJECT / args.results_dir)
    answers = pd.read_parquet(PROJECT / args.results_dir / "08_reporting/tradeoff_answers.parquet")
    variants = pd.read_parquet(PROJECT / args.results_dir / "07_model_output/variants.parquet")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True, check=False
    ).stdout.strip()
    verdict = "within" if args.study_s <= TARGET_S else "**over**"
    per_model = (
        nodes[nodes.model != "-"].pivot_table(index="model", columns="step", values="s", aggfunc="sum").round(1)
    )
    lines = [
        "# The quick default study: `make study` from a fresh clone, timed",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores ({_cpu_model()}), no GPU, Python "
        f"{platform.python_version()}, commit {commit}; a fresh clone, the machine otherwise idle.",
        "",
        f"Commands: `make setup` ({args.setup_s:.0f} s), then `make study` (`kedro run` on conf/base: zoo, "
        "optimize, evaluate, tradeoff), then `python bench/default_study.py` (see its docstring).",
        "",
        f"Wall time: {args.study_s:.0f} s",
        "",
        f"`make study` took **{args.study_s:.0f} s**, {verdict} the {TARGET_S} s target; `make setup` before it "
        f"{args.setup_s:.0f} s. The study: {results.model_id.nunique()} models in both frameworks, "
        f"{int((variants.status == 'ok').sum())} variants built ({int((variants.status != 'ok').sum())} not "
        f"applicable, with their reasons), {len(results)} cells measured; accuracy {accuracy_provenance(results)}.",
        *(["", args.note] if args.note else []),
        "",
        "## Where the time went, by pipeline",
        "",
        "Per pipeline (the sum of its nodes; the project's timing hook, also in MLflow as `time.<pipeline>_s`):",
        "",
        markdown_table(
            pd.DataFrame(
                [{"pipeline": name, "s": seconds} for name, seconds in by_pipeline.items()]
                + [{"pipeline": "kedro run (all)", "s": run_s}]
            )
        ),
        "",
        "Per model and node (s):",
        "",
        markdown_table(per_model.reset_index()),
        "",
        *time_breakdown(args.log, results),
        *estimate_notes(results),
        "## Summary",
        "",
        summary_markdown(results, len(results), 0, 0).split("\n", 1)[1],
        "## The research questions, as the study answered them",
        "",
        *[f"- **{row.question}** ({row.title}): {row.answer}" for row in answers.itertuples()],
        "",
    ]
    OUTPUT.write_text("\n".join(lines))
    print(OUTPUT.read_text())  # noqa: T201  (a benchmark prints its numbers)


if __name__ == "__main__":
    main()

"""Write bench/results/zoo.md from the zoo pipeline's outputs (run `kedro run --env full
--pipeline=zoo` first: the table is the full study's zoo), with the quick study's budgets beside
it (`python bench/zoo_budgets.py > budgets.md`, then `--budgets budgets.md`).

Usage: python bench/zoo_report.py --wall-s <seconds the kedro run took> [--command "..."]
       [--results-dir data/full] [--budgets budgets.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from green_deploy.zoo.builder import ZooCard

PROJECT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wall-s", type=float, required=True)
    parser.add_argument("--command", default="kedro run --env full --pipeline=zoo")
    parser.add_argument("--results-dir", default="data/full", help="the study's results_dir (globals.yml)")
    parser.add_argument("--budgets", type=Path, help="bench/zoo_budgets.py's table: quick against full budgets")
    args = parser.parse_args()
    root = PROJECT / args.results_dir

    import tensorflow as tf
    import torch

    table = pd.read_parquet(root / "08_reporting/zoo_summary.parquet")
    markdown = (root / "08_reporting/zoo_summary.md").read_text()
    cards = {
        p.parent.name: ZooCard.from_dict(json.loads(p.read_text())).to_dict()
        for p in sorted((root / "06_models/zoo").glob("*/card.json"))
    }
    extra = []
    for model_id, card in cards.items():
        tests = card["test_metrics"]
        secondary = [k for k in tests[card["frameworks"][0]] if k != card["metric"]]
        if secondary:
            extra.append(
                f"- `{model_id}` also: "
                + ", ".join(
                    f"{k} = " + " / ".join(f"{values[k]:.4f} ({framework})" for framework, values in tests.items())
                    for k in secondary
                )
            )
    total_train_s = sum(card["training"]["duration_s"] for card in cards.values())
    total_build_s = sum(card["build_duration_s"] for card in cards.values())
    lines = [
        "# The model zoo: size, accuracy, training time and framework parity",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores ({_cpu_model()}), no GPU; "
        f"torch {torch.__version__}, tensorflow {tf.__version__} with tf-keras, Python {platform.python_version()}.",
        "",
        f"Command: `{args.command}` (from an empty `{args.results_dir}/06_models/zoo`), then "
        f"`python bench/zoo_report.py --wall-s {args.wall_s:.0f}`.",
        f"Wall time of the whole run: **{args.wall_s:.0f} s**; model builds {total_build_s:.0f} s, of which training {total_train_s:.0f} s "
        "(the rest: data loading, frozen-backbone features, evaluating both frameworks on the full test sets, saving).",
        "",
        "- *value*: the entry's task metric on the **full test split** in that framework.",
        "- *training*: PyTorch training time (for frozen backbones it includes computing their features once); the Keras twin gets the trained weights.",
        "- *max abs diff*: the largest |PyTorch − Keras| over every output on the whole test set (logits, embeddings, or next-byte logits); "
        "the build fails above 1e-4 + 1e-5·max|output|.",
        "- *size on disk*: safetensors + config for PyTorch, the `.keras` archive for Keras (Keras counts batch-norm statistics as weights; "
        "MiniLM's Keras twin folds the token-type row into the position table).",
        "",
        markdown,
        *extra,
        "",
        f"Models: {len(cards)}; rows: {len(table)}.",
    ]
    if args.budgets is not None:
        lines += [
            "",
            "## The quick default study's budgets",
            "",
            "`make study` trains the from-scratch models on fewer examples and epochs, reads half as many tokens "
            "with the frozen MiniLM encoders and trains EfficientNet-Lite's head on fewer features "
            "(`conf/base/parameters_zoo.yml`; the full budgets are `conf/full/parameters_zoo.yml`). Both builds' "
            "PyTorch models scored on the **whole** test split (`python bench/zoo_budgets.py`; the quick study "
            "itself scores at most 2,000 items of it, the interval then about 1.4x as wide):",
            "",
            args.budgets.read_text().strip(),
        ]
    out = PROJECT / "bench/results/zoo.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())  # noqa: T201  (a benchmark prints its numbers)


if __name__ == "__main__":
    main()

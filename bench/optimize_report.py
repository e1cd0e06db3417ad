"""Write bench/results/optimize.md from the optimize pipeline's variants table.

Usage: python bench/optimize_report.py --wall-s <seconds the kedro run took>
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]


def _fmt(value, pattern: str) -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, pattern)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wall-s", type=float, required=True)
    parser.add_argument("--command", default="kedro run --pipeline=optimize")
    args = parser.parse_args()
    table = pd.read_parquet(PROJECT / "data/07_model_output/variants.parquet")
    ok = table[table.status == "ok"]
    lines = [
        "# Optimization variants: what each technique changed and what it cost",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}.",
        f"Command: `{args.command}` (zoo already built), then `python bench/optimize_report.py --wall-s {args.wall_s:.0f}`. "
        f"Wall time of the run: **{args.wall_s:.0f} s** for {len(table)} rows ({len(ok)} ok, "
        f"{(table.status == 'not_applicable').sum()} not applicable).",
        "",
        "- *size* and *zip*: the artifact on disk and deflated (where unstructured zeros save storage); "
        "*sparsity*: exact zeros among weight matrices, counted in the saved file.",
        "- *MACs*: one example, `torch.utils.flop_counter` on the PyTorch structure (TensorFlow variants share the "
        "architecture; int8 and half precision change precision, not the count).",
        "- *metric Δ*: task metric on the held-back half of the validation split, minus the framework baseline's.",
        "- *energy*: of applying the technique (conversion, pruning, fine-tuning). **Estimated** here "
        "(`cpu_time_tdp_estimate` + `ram_rss_estimate`: no RAPL, no GPU on this machine), never measured.",
        "",
        "| model | variant | technique | runtime | devices | size (KB) | zip (KB) | sparsity | MACs | metric | metric Δ | time (s) | energy (J, estimated) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.sort_values(["model_id", "framework", "variant_id"]).itertuples():
        if row.status != "ok":
            lines.append(
                f"| {row.model_id} | {row.variant_id} | {row.technique} | — | — | not applicable: {row.reason[:90]} |||||||| "
            )
            continue
        lines.append(
            f"| {row.model_id} | {row.variant_id} | {row.technique} | {row.runtime} | {row.devices} | "
            f"{row.size_on_disk_bytes / 1e3:,.0f} | {row.compressed_size_bytes / 1e3:,.0f} | {_fmt(row.effective_sparsity, '.2f')} | "
            f"{_fmt(row.macs, ',.0f')} | {_fmt(row.val_metric, '.4f')} | {_fmt(row.metric_delta, '+.4f')} | "
            f"{row.optimization_duration_s:.2f} | {_fmt(row.optimization_total_energy_j, '.1f')} |"
        )
    out = PROJECT / "bench/results/optimize.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())  # noqa: T201  (a benchmark prints its numbers)


if __name__ == "__main__":
    main()

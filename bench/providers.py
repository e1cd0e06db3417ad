"""Write bench/results/providers.md: each provider's serving stack measured on this machine by the
quick default study (`make study`), against the in-process floor and the local server, and what
each region's grid and PUE add.

Per cell, J/inference is each server's process tree metered from outside around every repetition
(``server_energy_per_item_j``: CPU time × one hardware thread's TDP share, PSS × 0.375 W/GB;
ESTIMATED on this machine, which has no RAPL), the same way for every stack; the in-process floor
is the same variant called in this process with no server (``inprocess``: its CPU-time estimate
over the model calls). Overhead = stack − floor, at the same batch size.

The study's quick protocol (0.1 s warm-up and repetitions) catches each stack soon after it
started; ``--steady S`` measures the baseline again on every stack after S seconds of warm-up,
in 1 s repetitions, one request at a time at batch 1 (TorchServe's Java frontend compiles while
it warms up).

Usage, after `make study` in a project folder (its study.log for the stacks' start-up times):

    .venv/bin/python bench/providers.py --project /tmp/study_clone --log /tmp/study_clone/study.log --steady 10
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from green_deploy.evaluate.summary import markdown_table

PROJECT = Path(__file__).resolve().parents[1]
OUTPUT = PROJECT / "bench/results/providers.md"
STACKS = ["local", "sagemaker_server", "azureml_server", "sagemaker_torchserve"]
FLOOR = "inprocess"
KEYS = ["model_id", "variant_id", "batch_size"]


def startup_s(log: str) -> dict[str, list[float]]:
    """Seconds each stack took to serve, from the deployers' "serves at ... up in N s" lines."""
    times: dict[str, list[float]] = {}
    for target, seconds in re.findall(r"on (\w+) serves at \S+ \(pid \d+\), up in ([\d.]+) s", log):
        times.setdefault(target, []).append(float(seconds))
    for seconds in re.findall(r"\(\w+\) serves at \S+ \(pid \d+\), up in ([\d.]+) s", log):
        times.setdefault("local", []).append(float(seconds))
    return times


def one_at_a_time(results: pd.DataFrame) -> pd.DataFrame:
    concurrency = results.concurrency.fillna(1) if "concurrency" in results else 1
    return results[concurrency == 1]


def cell_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per stack cell (one request at a time): its J/inference and latency, the floor's,
    and the overheads. Energy floor: the model calls alone, as the local server's own windows
    metered them (its ``energy_per_item_j``: CPU time of the server process inside each request's
    window, no HTTP, no JSON); latency floor: the in-process worker's (no server at all)."""
    results = one_at_a_time(results)
    floor = results[results.target == "local"].set_index(KEYS)[["energy_per_item_j"]]
    floor.columns = ["floor_mj"]
    latency = results[results.target == FLOOR].set_index(KEYS)[["latency_p50_ms"]]
    latency.columns = ["floor_latency_ms"]
    cells = results[results.target.isin(STACKS)].set_index(KEYS).join(floor, how="inner").join(latency, how="inner")
    cells = cells.reset_index()
    cells["floor_mj"] *= 1e3
    cells["server_mj"] = cells.server_energy_per_item_j * 1e3
    cells["overhead_mj"] = cells.server_mj - cells.floor_mj
    cells["overhead_x"] = cells.server_mj / cells.floor_mj
    cells["latency_overhead_ms"] = cells.latency_p50_ms - cells.floor_latency_ms
    cells["target"] = pd.Categorical(cells.target, STACKS, ordered=True)
    return cells.sort_values(["target", "variant_id", "batch_size"])


def load_table(results: pd.DataFrame) -> pd.DataFrame:
    """The cells under load: each stack with many clients at once, against local's."""
    if "concurrency" not in results:
        return pd.DataFrame()
    loaded = results[results.concurrency.fillna(1) > 1]
    rows = loaded[["target", "variant_id", "batch_size", "concurrency"]].copy()
    rows["mJ/inference (server tree)"] = loaded.server_energy_per_item_j * 1e3
    rows["CV"] = loaded.energy_cv
    rows["items/s"] = loaded.throughput_items_per_s
    rows["latency p50 ms"] = loaded.latency_p50_ms
    rows["latency p95 ms"] = loaded.latency_p95_ms
    order = [t for t in ["local", "local_unbatched", *STACKS[1:]] if t in set(rows.target)]
    rows["target"] = pd.Categorical(rows.target, order, ordered=True)
    return rows.sort_values(["variant_id", "target"]).rename(columns={"target": "stack", "variant_id": "variant"})


def summary_rows(cells: pd.DataFrame, startup: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for target, group in cells.groupby("target", observed=True):
        rows.append(
            {
                "stack": target,
                "serving path": group.serving_path.iloc[0],
                "cells": len(group),
                "start-up s (median)": float(np.median(startup[target])) if startup.get(target) else None,
                "J/inference over floor, median x": float(group.overhead_x.median()),
                "overhead mJ/inference, median": float(group.overhead_mj.median()),
                "latency p50 over floor, median ms": float(group.latency_overhead_ms.median()),
                "region": group.region.iloc[0],
                "PUE": float(group.pue.iloc[0]),
                "grid gCO2e/kWh": float(group.intensity_g_per_kwh.iloc[0]),
                "intensity source": group.intensity_source.iloc[0],
            }
        )
    return pd.DataFrame(rows)


def location_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """Per stack, gCO2e per 1,000 inferences of its median cell: as metered here (this machine's
    software cost) in its provider's region with its PUE, against the local server in Germany."""
    rows = []
    for target, group in cells.groupby("target", observed=True):
        energy_kwh = group.server_energy_per_item_j.median() * 1000 / 3.6e6
        rows.append(
            {
                "stack": target,
                "region": group.region.iloc[0],
                "J per 1,000 (median cell)": float(group.server_energy_per_item_j.median() * 1000),
                "PUE": float(group.pue.iloc[0]),
                "facility J per 1,000": float(group.server_energy_per_item_j.median() * 1000 * group.pue.iloc[0]),
                "gCO2e per 1,000": float(energy_kwh * group.pue.iloc[0] * group.intensity_g_per_kwh.iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def steady_state(project: Path, warmup_s: float, repetitions: int = 5) -> pd.DataFrame:
    """resnet_fmnist's PyTorch baseline on every stack, measured after ``warmup_s`` of requests:
    J/inference of the server's process tree and latency, in 1 s repetitions at batch 1."""
    from green_deploy.deploy.runner import variant_of
    from green_deploy.deploy.targets import DeployerOptions, get_target
    from green_deploy.evaluate.harness import Client, ServerMeter, batches, measure_cell, summarize, warm_up
    from green_deploy.evaluate.study import ProtocolSettings

    variants = pd.read_parquet(project / "data/07_model_output/variants.parquet")
    row = variants[(variants.model_id == "resnet_fmnist") & (variants.variant_id == "torch_baseline")].iloc[0]
    example = np.load(project / "data/07_model_output/deploy/resnet_fmnist/torch_baseline/local/warmup.npy")
    variant = variant_of(row.to_dict(), example)
    inputs = np.repeat(example, 64, axis=0)  # one real validation image; a dense CNN costs the same on any
    protocol = ProtocolSettings(repetition_s=1.0, min_repetitions=repetitions, max_repetitions=repetitions)
    import yaml

    deploy = yaml.safe_load((project / "conf/base/parameters_deploy.yml").read_text())["deploy"]
    deploy["work_dir"] = str(project / "data/07_model_output/deploy_steady")
    rows = []
    for name in STACKS:
        target = get_target(name)
        settings = target.settings_from(deploy)
        if hasattr(settings, "constraints_file"):
            from dataclasses import replace

            settings = replace(
                settings,
                constraints_file=str(project / "constraints.txt"),
                packages=str(project / ".venv/provider-stacks"),
            )
        deployer = target.build(settings, DeployerOptions(deploy["work_dir"], tied=True))
        deployment = deployer.deploy(variant)
        meter = ServerMeter.of(deployment)
        try:
            client = Client(deployer, deployment, 256)
            stream = batches(inputs, 1, 0)
            warm_up(client, stream, warmup_s)
            figures = summarize(measure_cell(client, stream, protocol, server_meter=meter))
        finally:
            if meter is not None:
                meter.close()
            deployer.teardown(deployment)
        rows.append(
            {
                "stack": name,
                "warm-up s": warmup_s,
                "repetitions": figures["n_repetitions"],
                "mJ/inference (server tree)": figures["server_energy_per_item_j"] * 1e3,
                "CV": figures["energy_cv"],
                "latency p50 ms": figures["latency_p50_ms"],
                "latency p95 ms": figures["latency_p95_ms"],
                "items/s": figures["throughput_items_per_s"],
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=PROJECT)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--steady", type=float, default=0.0, help="seconds of warm-up before the steady pass; 0: none")
    args = parser.parse_args()
    results = pd.read_parquet(args.project / "data/07_model_output/evaluation_results.parquet")
    answers = pd.read_parquet(args.project / "data/08_reporting/tradeoff_answers.parquet")
    log = args.log.read_text(errors="replace") if args.log else ""
    cells = cell_table(results)
    commit = subprocess.run(
        ["git", "-C", str(args.project), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    columns = {
        "target": "stack",
        "variant_id": "variant",
        "batch_size": "batch",
        "server_mj": "mJ/inference (server tree)",
        "floor_mj": "floor mJ",
        "overhead_mj": "overhead mJ",
        "overhead_x": "x floor",
        "server_energy_per_item_j": None,
        "latency_p50_ms": "latency p50 ms",
        "floor_latency_ms": "floor p50 ms",
        "latency_overhead_ms": "latency overhead ms",
        "energy_cv": "CV",
        "accuracy": "accuracy",
    }
    shown = cells[[c for c, name in columns.items() if name]].rename(columns={c: n for c, n in columns.items() if n})
    rq = answers.set_index("question")
    lines = [
        "# Provider serving stacks on this machine: overhead over the in-process floor, and location",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} by the quick default study (`make study`, commit {commit}) on "
        f"{platform.machine()}, 2 CPU cores, no GPU, no RAPL: every energy figure here is ESTIMATED "
        "(CPU time x TDP share, memory x 0.375 W/GB), the same way for every stack, never measured by a meter.",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'bench/providers.py', *sys.argv[1:]])}` (after `make study`).",
        "",
        "Each stack serves `resnet_fmnist`'s PyTorch baseline, bf16 and static int8 variants (evaluate.target_scope) "
        "at batch 1 and 32, requests one after another (concurrency 1), 0.1 s repetitions until the 95% interval "
        "is within 5% (at most 8). J/inference: the server's whole process tree metered from outside around each "
        "repetition. Energy floor: the model calls alone, as the local server's own request windows metered them "
        "(no HTTP, no JSON); latency floor: the same variant called in process (`inprocess`, no server). "
        "The quick protocol's repetitions are short: CVs of 0.1-0.5 are common here, up to 1.3 for TorchServe.",
        "",
        "## Per stack",
        "",
        markdown_table(summary_rows(cells, startup_s(log))),
        "",
        "## Per cell",
        "",
        markdown_table(shown),
        "",
        "## Under load: 16 clients at once, batch 1",
        "",
        "Each client sends its next request when its last is answered. `local` batches requests that wait "
        "(micro-batching, up to 32 items), `local_unbatched` is the same server without it; Azure ML's server runs "
        "one gunicorn sync worker (one request at a time); TorchServe queues for its one model worker "
        "(its own batching is off by default in the SageMaker toolkit).",
        "",
        markdown_table(load_table(results)),
        "",
        *(
            [
                f"## After {args.steady:.0f} s of warm-up: the baseline at batch 1, 1 s repetitions",
                "",
                "The study's 0.1 s warm-up catches a stack soon after its start; here each stack first answered "
                f"{args.steady:.0f} s of requests (resnet_fmnist torch_baseline, one request at a time).",
                "",
                markdown_table(steady_state(args.project, args.steady)),
                "",
            ]
            if args.steady
            else []
        ),
        "## Location: the same software cost in each provider's region",
        "",
        "The hardware is this machine's, not the provider's: the J are what each stack's software costs here; the "
        "region's grid (CodeCarbon's country data for the region's country) and the provider's PUE turn them into "
        "facility energy and carbon. The local server is costed in Germany (evaluate.country_iso) with PUE 1.0.",
        "",
        markdown_table(location_rows(cells)),
        "",
        "## RQ1.6 and RQ1.7, as the study's report answers them",
        "",
        f"- **RQ1.6**: {rq.loc['RQ1.6', 'answer']}",
        f"- **RQ1.7**: {rq.loc['RQ1.7', 'answer']}",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()

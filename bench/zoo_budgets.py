"""How far the quick default study's zoo budgets move each model's accuracy from the full ones.

Both builds must exist: `kedro run --pipeline=zoo` (quick, data/) and `kedro run --pipeline=zoo
--env full` (data/full/). Each build's PyTorch model is scored on its **whole** test split (the
Keras twins give the same outputs, checked at build time), with the metric's 95% interval; the
table goes to stdout as Markdown (pasted into bench/results/zoo.md).

Usage: python bench/zoo_budgets.py [--quick data] [--full data/full]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from kedro.config import OmegaConfigLoader

from green_deploy.evaluate.accuracy import metric_interval
from green_deploy.evaluate.summary import markdown_table
from green_deploy.settings import CONFIG_LOADER_ARGS
from green_deploy.zoo.artifacts import load_torch_model
from green_deploy.zoo.builder import prepare_task_data, score_items
from green_deploy.zoo.data import load_dataset
from green_deploy.zoo.families import get_family
from green_deploy.zoo.inference import predict_torch
from green_deploy.zoo.metrics import Evidence, metric_values, task_metrics
from green_deploy.zoo.spec import dataset_settings, select_entry

PROJECT = Path(__file__).resolve().parents[1]


def _scores(zoo: dict, model_id: str, models_dir: Path) -> tuple[Evidence, dict]:
    entry = select_entry(zoo["models"], model_id)
    settings = dataset_settings(zoo.get("datasets") or {}, entry)
    data = prepare_task_data(entry, load_dataset(entry.dataset, settings), get_family(entry.family))
    model = load_torch_model(models_dir / model_id / "torch")
    evidence, _ = score_items(
        entry.task, lambda x: predict_torch(model, x), data.test_x, data.test_y, data.test_pairs
    )
    card = json.loads((models_dir / model_id / "card.json").read_text())
    return evidence, card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", default="data", help="the quick study's results_dir")
    parser.add_argument("--full", default="data/full", help="the full study's results_dir")
    args = parser.parse_args()
    loaders = {
        env: OmegaConfigLoader(str(PROJECT / "conf"), env=env, **CONFIG_LOADER_ARGS)["parameters"]["zoo"]
        for env in ("local", "full")
    }
    rows = []
    for model_id in sorted(loaders["local"]["models"]):
        entry = loaders["local"]["models"][model_id]
        metric = entry["metric"]
        found = {}
        for env, root in (("full", args.full), ("local", args.quick)):
            evidence, card = _scores(loaders[env], model_id, PROJECT / root / "06_models/zoo")
            interval = metric_interval(task_metrics(entry["task"])[metric], evidence)
            found[env] = (metric_values(evidence)[metric], interval, card)
        (full, full_ci, full_card), (quick, quick_ci, quick_card) = found["full"], found["local"]
        rows.append(
            {
                "model": model_id,
                "metric": metric,
                "full budget": full,
                "full 95% CI": f"[{full_ci.low:.4f}, {full_ci.high:.4f}]",
                "quick budget": quick,
                "quick 95% CI": f"[{quick_ci.low:.4f}, {quick_ci.high:.4f}]",
                "Δ (pp)": (quick - full) * 100,
                "test items": len(evidence),
                "full training (s)": full_card["training"]["duration_s"],
                "quick training (s)": quick_card["training"]["duration_s"],
                "full build (s)": full_card["build_duration_s"],
                "quick build (s)": quick_card["build_duration_s"],
            }
        )
    print(markdown_table(pd.DataFrame(rows)))  # noqa: T201 - the report goes to stdout


if __name__ == "__main__":
    main()

"""Zoo nodes: thin calls into ``green_deploy.zoo``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from green_deploy.config import check_keys, parse_settings
from green_deploy.zoo.builder import ParityTolerance, ScoredItems, build_zoo_model
from green_deploy.zoo.spec import ZOO_KEYS, dataset_settings, select_entry

logger = logging.getLogger(__name__)


def build_model(zoo: dict[str, Any], model_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or reuse) one zoo model in its frameworks; its card and its MLflow metrics.

    The artifacts go to ``<zoo.models_dir>/<model_id>/``, which is also the build cache (the
    ``{model_id}.torch_model`` and ``{model_id}.keras_model`` catalog entries read them).
    """
    zoo = check_keys("zoo", zoo, ZOO_KEYS)
    parity = parse_settings(ParityTolerance, zoo.get("parity"), "zoo.parity")
    entry = select_entry(zoo["models"], model_id)
    card = build_zoo_model(
        entry,
        dataset_settings(zoo.get("datasets") or {}, entry),
        Path(zoo["models_dir"]) / model_id,
        parity,
        test_subset=ScoredItems(zoo.get("test_max_items"), zoo.get("test_seed", 0)),
    )
    metrics = {
        f"{model_id}.{framework}.{name}": {"value": float(value), "step": 0}
        for framework, values in card.test_metrics.items()
        for name, value in values.items()
    }
    if card.parity_max_abs_diff is not None:
        metrics[f"{model_id}.parity_max_abs_diff"] = {"value": card.parity_max_abs_diff, "step": 0}
    metrics[f"{model_id}.training_duration_s"] = {"value": card.training["duration_s"], "step": 0}
    return card.to_dict(), metrics


def summarize_zoo(*cards: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """One row per model and framework, and the same as a Markdown table."""
    rows = [
        {
            "model_id": card["model_id"],
            "domain": card["domain"],
            "framework": framework,
            "family": card["family"],
            "task": card["task"],
            "metric": card["metric"],
            "value": values[card["metric"]],
            "parameters": card["n_parameters"],
            "size_on_disk_mb": card["size_on_disk_bytes"][framework] / 1e6,
            "n_test": card["n_test"],
            "training_duration_s": card["training"]["duration_s"],
            "parity_max_abs_diff": card["parity_max_abs_diff"],
        }
        for card in cards
        for framework, values in card["test_metrics"].items()
    ]
    table = pd.DataFrame(rows)
    return table, _markdown(table)


def _markdown(table: pd.DataFrame) -> str:
    header = "| model | domain | framework | task metric | value | parameters | size on disk (MB) | test examples | training (s) | max abs diff PyTorch↔Keras |"
    lines = [header, "|" + "---|" * 10]
    for row in table.itertuples():
        lines.append(
            f"| {row.model_id} | {row.domain} | {row.framework} | {row.metric} | {row.value:.4f} | {row.parameters:,} | "
            f"{row.size_on_disk_mb:.2f} | {row.n_test:,} | {row.training_duration_s:.1f} | {_parity(row.parity_max_abs_diff)} |"
        )
    return "\n".join(lines) + "\n"


def _parity(max_abs_diff: float | None) -> str:
    return "no twin" if max_abs_diff is None or pd.isna(max_abs_diff) else f"{max_abs_diff:.2e}"

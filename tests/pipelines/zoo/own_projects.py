"""A copy of the project whose only zoo model is a user's own entry: what the own-model pipeline
tests share."""

from __future__ import annotations

import csv
import itertools
import random
import shutil
from pathlib import Path

import yaml

from tests.pipelines.conftest import PROJECT, kedro


def write_reviews(path: Path) -> None:
    """120 labelled reviews: sentences whose sentiment a sentence encoder can tell apart."""
    things = ["film", "book", "meal", "hotel", "concert", "game", "phone", "course", "show", "album"]
    templates = ["The {t} was {w}.", "What a {w} {t}!", "I found this {t} {w} from start to end."]
    words = {
        "positive": ["wonderful", "excellent", "delightful", "superb", "fantastic", "lovely"],
        "negative": ["terrible", "awful", "dreadful", "disappointing", "horrible", "boring"],
    }
    rows = []
    for label, adjectives in words.items():
        combos = list(itertools.product(things, adjectives, templates))
        random.Random(label).shuffle(combos)
        rows += [(template.format(t=thing, w=word), label) for thing, word, template in combos[:60]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows(rows)


def classifier(**fields) -> dict:
    """An own classifier's zoo entry: what every one has, and ``fields``."""
    return {"task": "classification", "metric": "accuracy", **fields}


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def own_project(
    root: Path,
    entry: dict,
    model_id: str,
    variants: list[str],
    measured: list[str],
) -> Path:
    """A copy of the project whose only model is ``entry`` (the tiny configuration otherwise)."""
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copytree(PROJECT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "conf/local").mkdir()
    write_reviews(root / "data/01_raw/reviews.csv")
    edit_yaml(root / "conf/base/parameters_zoo.yml", lambda d: d["zoo"].update(models={model_id: entry}))
    edit_yaml(root / "conf/test/parameters_zoo.yml", lambda d: d["zoo"].update(models={}))
    edit_yaml(
        root / "conf/test/parameters_optimize.yml", lambda d: d["optimize"].update(plan=None, only=variants)
    )
    edit_yaml(
        root / "conf/test/parameters_evaluate.yml",
        lambda d: d["evaluate"].update(models=[model_id], variants=measured, batch_sizes=[1]),
    )
    return root


def run(root: Path, pipeline: str) -> str:
    result = kedro(root, "run", f"--pipeline={pipeline}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr

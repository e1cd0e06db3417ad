"""Packages: the variant and the vendored serving core, pinned requirements, reproducible bytes."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from green_deploy.deploy.packaging import (
    ServingConfig,
    archive_entries,
    read_constraints,
    resource_name,
    runtime_requirements,
    write_archive,
    write_code_dir,
)
from green_deploy.errors import ConfigError


def _package(tiny, constraints_file, folder):
    serving = ServingConfig.for_variant(tiny.variant, max_items=8)
    code = write_code_dir(
        tiny.variant,
        folder / "code",
        read_constraints(constraints_file),
        serving,
        {"serve": ("#!/bin/sh\n", 0o755)},
    )
    return code, write_archive(archive_entries(tiny.variant, code), folder / "model.tar.gz")


def test_the_same_variant_gives_the_same_bytes_wherever_and_whenever_it_is_packaged(
    tiny, constraints_file, tmp_path
):
    _, first = _package(tiny, constraints_file, tmp_path / "a")
    code, _ = _package(tiny, constraints_file, tmp_path / "b")
    os.utime(code / "serving.json", (0, 0))  # another mtime, same content
    second = write_archive(archive_entries(tiny.variant, code), tmp_path / "b" / "model.tar.gz")
    assert first == second
    assert (tmp_path / "a" / "model.tar.gz").read_bytes() == (tmp_path / "b" / "model.tar.gz").read_bytes()

    (code / "serving.json").write_text(
        (code / "serving.json").read_text().replace('"max_items": 8', '"max_items": 9')
    )
    assert write_archive(archive_entries(tiny.variant, code), tmp_path / "c.tar.gz") != first


def test_the_archive_holds_the_model_at_the_top_and_the_serving_core_in_code(
    tiny, constraints_file, tmp_path
):
    _, _ = _package(tiny, constraints_file, tmp_path)
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        serving = json.loads(tar.extractfile("code/serving.json").read())
        requirements = tar.extractfile("code/requirements.txt").read().decode().splitlines()
    assert names == sorted(names)
    assert {m.mtime for m in members} == {315532800} and {m.uid for m in members} == {0}
    assert {"model.safetensors", "variant_config.json", "record.json"} <= set(names)
    assert {
        "code/serve",
        "code/green_deploy/serving/app.py",
        "code/green_deploy/deploy/sagemaker_entry.py",
    } <= set(names)
    assert next(m for m in members if m.name == "code/serve").mode == 0o755
    # the Kedro project parts stay home; nothing compiled travels
    assert not [n for n in names if "/pipelines" in n or "__pycache__" in n or n.endswith(".pyc")]
    assert serving["runtime"] == "pytorch" and serving["input_shape"] == [1, 28, 28]
    assert serving["model_folder"] == "pt_prune50" and serving["max_items"] == 8
    assert "torch==2.13.0+cpu" in requirements and "fastapi==0.165.0" in requirements
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements  # +cpu is not on PyPI
    assert "tensorflow==2.21.0" not in requirements


def test_requirements_follow_the_runtime_and_the_family(constraints_file):
    pins = read_constraints(constraints_file)
    assert "onnxruntime==1.32.0" in runtime_requirements("onnxruntime", "minilm", pins)
    assert not any(
        line.startswith("transformers") for line in runtime_requirements("onnxruntime", "minilm", pins)
    )
    assert "transformers==5.23.0" in runtime_requirements("pytorch", "minilm", pins)
    assert "tf_keras==2.21.0" in runtime_requirements("keras", None, pins)
    with pytest.raises(ConfigError, match=r"no pin for \['torch'\]"):
        runtime_requirements("pytorch", None, {k: v for k, v in pins.items() if k != "torch"})
    with pytest.raises(ConfigError, match="not found"):
        read_constraints("no/such/constraints.txt")


@pytest.mark.parametrize("length", [32, 63])
def test_resource_names_fit_the_cloud_rules(length):
    name = resource_name(
        "gd", "9_very_long_model_name_" * 3, "pt_prune50_local_ft", "0123456789abcdef", length
    )
    assert len(name) <= length and name[0].isalpha() and name.endswith("-01234567")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert resource_name("", "1m", "v", "ab" * 4, 32).startswith("m-1m-v")

"""The runtime registry: names, devices, the runtime a folder holds, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.runtimes import RUNTIMES, check_device, get_runtime, runtime_of_folder, runtimes_on

HEAVY_MODULES = ("torch", "tensorflow", "tf_keras", "onnx", "onnxruntime", "ai_edge_litert", "safetensors")


def test_every_runtime_is_registered_under_its_name():
    assert list(RUNTIMES) == ["pytorch", "keras", "tflite", "onnxruntime"]
    assert all(get_runtime(name).name == name for name in RUNTIMES)


def test_an_unknown_runtime_names_the_known_ones():
    with pytest.raises(
        ConfigError, match="unknown runtime 'jax'; known: pytorch, keras, tflite, onnxruntime"
    ):
        get_runtime("jax")


def test_only_pytorch_runs_on_cuda_and_other_devices_are_refused():
    assert runtimes_on("cpu") == tuple(RUNTIMES)
    assert runtimes_on("cuda") == ("pytorch",)
    check_device("pytorch", "cuda")
    with pytest.raises(ConfigError, match="the tflite runtime serves on the CPU only here, not on cuda"):
        check_device("tflite", "cuda")
    with pytest.raises(ConfigError, match="unknown device 'tpu'; known: cpu, cuda"):
        check_device("pytorch", "tpu")


def test_a_folder_is_named_by_its_model_file_a_converted_graph_first(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert runtime_of_folder(tmp_path) == "pytorch"
    (tmp_path / "model.onnx").write_bytes(b"")
    assert runtime_of_folder(tmp_path) == "onnxruntime"
    with pytest.raises(
        ArtifactError,
        match=r"holds no model file \(model.onnx, model.tflite, model.keras, model.safetensors\)",
    ):
        runtime_of_folder(tmp_path / "empty")


def test_a_converted_graph_names_its_source_and_framework():
    assert [(r.name, r.converted_from) for r in RUNTIMES.values() if r.converted_from] == [
        ("tflite", "keras"),
        ("onnxruntime", "pytorch"),
    ]
    assert {r.name: r.framework for r in RUNTIMES.values()} == {
        "pytorch": "torch",
        "keras": "tensorflow",
        "tflite": "tensorflow",
        "onnxruntime": "torch",
    }


def test_importing_the_runtimes_imports_no_framework():
    """Serving, deploy and the zygote import the registry first; the framework comes with a model."""
    code = (
        "import json, sys\n"
        "import green_deploy.runtimes\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []

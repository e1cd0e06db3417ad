"""SageMaker's prebuilt PyTorch container stack run on this machine: the SageMaker inference
toolkit (sagemaker-inference 1.10.1, sagemaker-pytorch-inference 2.0.25) on TorchServe 0.12.0 (a
Java frontend, Python model workers), the path most SageMaker users take, over a model folder
laid out as such a user would upload it: the variant's files, and ``code/`` with the vendored
serving core and ``inference.py`` (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``).

Started by ``torchserve_launcher`` (the container's ``serve`` with the changes its docstring
lists: per-instance config, frontend lookup and a child subreaper), on loopback ports; one
model worker (``workers``) with ``threads`` intra-op threads. PyTorch variants only: the toolkit
loads the model in its PyTorch worker; TensorFlow models go to SageMaker's TensorFlow Serving
containers, whose ``tensorflow_model_server`` binary is not installable here (no wheel), and
ONNX or TFLite files would need a handler of their own. ``code/requirements.txt`` is left out:
the toolkit would ``pip install`` it when it starts (offline here); the image holds the packages.

TorchServe answers ``/ping`` before the worker has loaded the model, so readiness is the model's
worker reported ``READY`` by the management API (same port). It reports no energy: the study
meters its process tree.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from green_deploy.deploy.base import Variant
from green_deploy.deploy.packaging import REQUIREMENTS_FILE, ServingConfig, read_constraints, write_code_dir
from green_deploy.deploy.provider_stack import Launch, StackDeployer

TARGET = "sagemaker_torchserve"
LAUNCHER = (
    Path(__file__).resolve().with_name("torchserve_launcher.py")
)  # run as a script, never imported here
INFERENCE_SCRIPT = '''"""SageMaker PyTorch inference handler for a green-deploy variant (the toolkit calls these)."""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the vendored green_deploy package beside this file

from green_deploy.deploy.packaging import SERVING_CONFIG, ServingConfig  # noqa: E402

CONFIG = ServingConfig.read(HERE / SERVING_CONFIG)


def model_fn(model_dir):
    from green_deploy.serving import InputSpec, load_served_model

    spec = InputSpec(CONFIG.input_dtype, CONFIG.input_shape)
    return load_served_model(Path(model_dir), CONFIG.runtime, spec, CONFIG.model_name, CONFIG.num_threads)


def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError(f"send application/json, not {content_type}")
    return np.asarray(json.loads(body)["inputs"], dtype=CONFIG.input_dtype)


def predict_fn(data, model):
    return model.predict(data)


def output_fn(prediction, accept):
    return json.dumps({"outputs": np.asarray(prediction).tolist()})
'''


class SageMakerTorchServeDeployer(StackDeployer):
    target = TARGET
    provider = "aws"
    serving_path = "sagemaker_pytorch_torchserve"
    runtimes = ("pytorch",)
    runtimes_reason = (
        "SageMaker's PyTorch containers load PyTorch models; TensorFlow goes to TensorFlow Serving "
        "(its binary is not installable here) and ONNX/TFLite files need a handler of their own"
    )

    def launch(self, variant: Variant, folder: Path) -> Launch:
        s = self.settings
        packages = self.packages_dir() / TARGET
        instance = folder / "instance"
        model_dir = instance / "model"  # $SAGEMAKER_BASE_DIR/model, as /opt/ml/model
        if instance.exists():
            shutil.rmtree(instance)
        shutil.copytree(variant.folder, model_dir)
        serving = ServingConfig.for_variant(
            variant, max_items=s.max_items, max_batch_items=s.max_batch_items, num_threads=s.threads
        )
        constraints = read_constraints(Path(s.constraints_file))
        code_dir = write_code_dir(
            variant, model_dir / "code", constraints, serving, {"inference.py": (INFERENCE_SCRIPT, 0o644)}
        )
        (code_dir / REQUIREMENTS_FILE).unlink()  # see the module docstring
        env = {
            "PYTHONPATH": str(packages),
            "PATH": f"{packages / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "SM_INSTANCE_DIR": str(instance),
            "SAGEMAKER_BASE_DIR": str(instance),
            "SAGEMAKER_BIND_TO_PORT": "{port}",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(s.workers),
            "TS_INFERENCE_ADDRESS": "http://127.0.0.1:{port}",
            "TS_MANAGEMENT_ADDRESS": "http://127.0.0.1:{port}",
            "TS_METRICS_ADDRESS": "http://127.0.0.1:{port1}",
            "TS_GRPC_INFERENCE_PORT": "{port2}",
            "TS_GRPC_MANAGEMENT_PORT": "{port3}",
            "TS_DISABLE_SYSTEM_METRICS": "true",  # a collector process every minute, beside the model
        }
        if s.threads is not None:
            env["OMP_NUM_THREADS"] = str(s.threads)
        return Launch(
            command=[sys.executable, str(LAUNCHER)],
            env=env,
            ready_path="/models/model",
            ready_marker='"READY"',
            predict_path="/invocations",
            cwd=instance,
            ports=4,
        )

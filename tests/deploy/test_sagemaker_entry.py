"""The packaged SageMaker entry serves: /ping and /invocations answered by the serving core."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from green_deploy.deploy.sagemaker import SageMakerDeployer, SageMakerSettings
from green_deploy.deploy.sagemaker_entry import build_app
from green_deploy.energy import EnergyMonitor, discover_sources
from tests.deploy.conftest import sagemaker_settings


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory):
    """``model.tar.gz`` as a dry run writes it, extracted as SageMaker does into /opt/ml/model."""
    from tests.deploy.conftest import CONSTRAINTS

    work = tmp_path_factory.mktemp("sagemaker-work")
    settings = SageMakerSettings.parse(sagemaker_settings(str(CONSTRAINTS), max_items=16))
    plan = SageMakerDeployer(settings, work, dry_run=True).plan(tiny.variant)
    target = tmp_path_factory.mktemp("opt-ml") / "model"
    with tarfile.open(plan.archive) as tar:
        tar.extractall(target, filter="data")
    return target


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_the_entry_app_maps_ping_and_invocations_onto_the_serving_core(tiny, model_dir):
    app = build_app(model_dir, monitor=EnergyMonitor(discover_sources(gpu=False)))
    with TestClient(app) as client:
        ping = client.get("/ping")
        assert ping.status_code == 200 and ping.json()["model"] == "pt_prune50"

        answer = client.post("/invocations", json={"inputs": tiny.batch.tolist()})
        assert answer.status_code == 200
        body = answer.json()
        np.testing.assert_allclose(body["outputs"], tiny.expected, rtol=1e-5, atol=1e-6)
        assert body["energy"]["joules"] > 0 and body["energy"]["window"]["items"] == len(tiny.batch)

        compact = client.post(
            "/invocations",
            content=_npy(tiny.batch[:2]),
            headers={"Content-Type": "application/x-npy", "Accept": "application/json"},
        )
        assert compact.status_code == 200
        np.testing.assert_allclose(compact.json()["outputs"], tiny.expected[:2], rtol=1e-5, atol=1e-6)

        wrong = client.post("/invocations", json={"inputs": [[[0.0] * 28] * 28]})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_shape"
        too_many = client.post("/invocations", json={"inputs": np.zeros((17, 1, 28, 28)).tolist()})
        assert too_many.status_code == 422  # serving.json's max_items=16 reached the core

        metrics = client.get("/metrics").text
    # the core's own metrics count SageMaker's paths as its routes
    assert 'green_deploy_http_requests_total{endpoint="predict",status="200"} 2.0' in metrics
    assert 'green_deploy_http_requests_total{endpoint="health",status="200"} 1.0' in metrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_code_serve_runs_the_vendored_serving_core_over_real_http(tiny, model_dir):
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SM_MODEL_DIR")} | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GREEN_DEPLOY_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    process = subprocess.Popen(
        ["/bin/sh", str(model_dir / "code" / "serve"), "serve"],
        env=env,
        cwd=model_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as ping:
                    assert ping.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "the entry did not answer /ping within 90 s"
                time.sleep(0.25)
        request = urllib.request.Request(
            f"{url}/invocations",
            data=_npy(tiny.batch),
            headers={"Content-Type": "application/x-npy", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        np.testing.assert_allclose(body["outputs"], tiny.expected, rtol=1e-5, atol=1e-6)
        assert body["energy"]["joules"] > 0
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    # the package that answered is the one in the archive, not the repository's
    assert f"serving core from {model_dir.resolve() / 'code' / 'green_deploy'}" in output

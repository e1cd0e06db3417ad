"""``python -m green_deploy.serving`` as a real process: start, health, predict, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from green_deploy.serving.cli import main
from green_deploy.serving.model import load_model_files
from green_deploy.zoo.inference import predict_torch
from tests.serving.helpers import Client, save_tiny_variant, tiny_vit


def _wait_for(path, process, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("the server did not get ready in time")
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_the_cli_serves_a_saved_variant_and_stops_cleanly_on_sigterm(tmp_path):
    model, x = tiny_vit(4)
    variant_dir = save_tiny_variant(tmp_path, x, model)
    np.save(tmp_path / "example.npy", x[:1])
    ready_file = tmp_path / "server.json"
    command = [
        sys.executable, "-m", "green_deploy.serving",
        "--variant-dir", str(variant_dir), "--runtime", "pytorch", "--port", "0",
        "--input-example", str(tmp_path / "example.npy"), "--max-items", "8",
        "--ready-file", str(ready_file), "--no-gpu-energy",
    ]  # fmt: skip
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "HF_HUB_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready = _wait_for(ready_file, process)
        assert ready["url"].startswith("http://127.0.0.1:")  # loopback unless told otherwise
        assert (ready["pid"], ready["model"], ready["runtime"]) == (process.pid, "pt_fp16", "pytorch")
        client = Client(ready["url"])
        health = client.get("/health").json()
        assert (health["status"], health["model"], health["input"]["shape"]) == ("ok", "pt_fp16", [1, 28, 28])
        reply = client.predict_json(x)
        assert reply.status == 200, reply.body
        expected = predict_torch(load_model_files(variant_dir, "pytorch"), x)
        np.testing.assert_allclose(np.array(reply.json()["outputs"]), expected, rtol=1e-6)
        energy = reply.json()["energy"]
        assert energy["measured"] is False and energy["joules"] > 0  # a CPU machine: estimates, labelled
        assert client.predict_json(x[:, 0]).status == 422
        # a request the HTTP parser itself refuses still gets the documented JSON error
        host, port = ready["url"].removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            answer = raw.recv(65536).decode()
        head, _, body = answer.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 400") and "content-type: application/json" in head.lower()
        assert json.loads(body)["error"]["code"] == "malformed_http"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert f"serving pt_fp16 at {ready['url']}" in stderr
    assert "stopped serving pt_fp16 after 1 energy windows" in stderr
    assert not ready_file.exists()


def test_the_cli_says_which_input_spec_it_needs(tmp_path):
    with pytest.raises(SystemExit, match="--input-example FILE.npy"):
        main(["--variant-dir", str(tmp_path), "--runtime", "pytorch"])
    with pytest.raises(SystemExit, match="bad input spec"):
        main(
            [
                "--variant-dir",
                str(tmp_path),
                "--runtime",
                "pytorch",
                "--input-shape",
                "1,x",
                "--input-dtype",
                "float32",
            ]
        )

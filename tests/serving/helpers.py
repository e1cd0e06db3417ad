"""A real uvicorn server on a free loopback port, a plain HTTP client, tiny models and a fake meter."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.serving.validation import encode_npy

VIT_ARCH = {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32}


class ConstantPowerMeter:
    """A fake hardware energy counter (measured=True) for a device that draws ``power_w`` all the
    time: the cumulative energy is power × wall time since it was opened. Any two windows that
    overlapped in time would each count the overlap, which is what the concurrency tests catch."""

    component = "gpu"
    measured = True
    resolution_s = 0.0

    def __init__(self, power_w: float = 100.0):
        self.name = f"fake_constant_power({power_w:g} W)"
        self.power_w = power_w
        self._origin_s = time.perf_counter()
        self.closed = False

    def read_j(self) -> float:
        return self.power_w * (time.perf_counter() - self._origin_s)

    def close(self) -> None:
        self.closed = True


def tiny_vit(n_items: int = 8, seed: int = 0) -> tuple[Any, np.ndarray]:
    """A two-layer ViT of the zoo with random weights, and encoded images for it."""
    from green_deploy.zoo.families import get_family

    family = get_family("vit")
    images = (np.random.default_rng(seed).random((n_items, 28, 28)) * 255).astype(np.uint8)
    return family.build_torch(VIT_ARCH, 10).eval(), family.encode(images, VIT_ARCH)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def array(self) -> np.ndarray:
        import io

        return np.lib.format.read_array(io.BytesIO(self.body), allow_pickle=False)


class Client:
    """One keep-alive connection per call site (``http.client`` is the plainest real client)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0):
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout_s = host, int(port), timeout_s

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **kw
    ) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            connection.request(method, path, body=body, headers=headers or {}, **kw)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def predict_json(self, inputs: Any, path: str = "/v1/predict") -> Reply:
        body = json.dumps({"inputs": inputs.tolist() if isinstance(inputs, np.ndarray) else inputs})
        return self.request("POST", path, body, {"Content-Type": "application/json"})

    def predict_npy(self, array: np.ndarray, accept: str | None = None) -> Reply:
        headers = {"Content-Type": "application/x-npy"}
        if accept:
            headers["Accept"] = accept
        return self.request("POST", "/v1/predict", encode_npy(array), headers)


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))

    def serve() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn's answer to a failed startup; the caller sees `started` False
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text to {(sample name, sorted labels): value}, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def save_tiny_variant(folder: Any, x: np.ndarray, model: Any) -> Any:
    """A float16 variant of ``model`` written as the optimize pipeline writes it; its folder."""
    from green_deploy.optimize.artifacts import save_variant
    from green_deploy.optimize.base import OptimizationContext
    from green_deploy.optimize.spec import parse_variant
    from green_deploy.optimize.techniques import get_technique

    spec = parse_variant(
        "pt_fp16", {"framework": "torch", "technique": "half_precision", "settings": {"dtype": "float16"}}
    )
    context = OptimizationContext("tiny_vit", "vit", "classification", VIT_ARCH, 10, x)
    optimized = get_technique("half_precision").apply(model, spec.steps[0].settings, context)
    variant_dir = folder / "pt_fp16"
    save_variant(optimized, spec, {"family": "vit", "architecture": VIT_ARCH, "n_outputs": 10}, variant_dir)
    return variant_dir

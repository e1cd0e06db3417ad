"""The scoring application: FastAPI routes over one metered inference worker.

Routes:

- ``POST /v1/predict`` (and ``POST /v1/models/{name}/predict``, 404 for another name): a batch
  as JSON ``{"inputs": [...]}`` or as a ``.npy`` file (``Content-Type: application/x-npy``).
  The answer is JSON ``{"model", "runtime", "outputs", "energy", "latency_s"}``, or, when the
  request sent ``.npy`` or asks for it (``Accept: application/x-npy``), the outputs as ``.npy``
  with the energy in headers: ``X-Energy-Joules``, ``X-Energy-Joules-Per-Item``,
  ``X-Energy-Measured`` (``true``/``false``), ``X-Energy-Source`` (``component=source`` pairs
  separated by ``; ``), ``X-Energy-Components`` (the JSON list of components) and
  ``X-Latency-Seconds``. ``energy.joules`` is this request's server-side energy (see
  ``serving.worker`` for how it is attributed); ``latency_s`` is the server's time from the
  request's arrival until its outputs were ready (reading, validation, queueing, inference).
- ``GET /health``: 200 with the model, runtime, input spec, limits and energy sources; 503 when
  the worker is not running.
- ``GET /metrics``: Prometheus text (``serving.metrics``).

Every refusal is JSON ``{"error": {"code", "message"}}`` with a 4xx status; a failing model call
is a 500 of the same shape and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from green_deploy.energy import EnergyMonitor
from green_deploy.errors import ConfigError
from green_deploy.serving.metrics import ServingMetrics
from green_deploy.serving.model import ServedModel
from green_deploy.serving.responses import error_body, prediction_body
from green_deploy.serving.validation import (
    JSON_TYPE,
    NPY_TYPE,
    InvalidRequestError,
    encode_npy,
    media_type,
    parse_body,
)
from green_deploy.serving.worker import InferenceResult, InferenceWorker, ModelCallError, ServerBusyError

logger = logging.getLogger(__name__)

ROUTES = "POST /v1/predict, POST /v1/models/{name}/predict, GET /health, GET /metrics"


@dataclass(frozen=True)
class ServingLimits:
    """What one request may carry and how much may wait.

    Attributes:
        max_items: items (batch rows) per request.
        max_body_bytes: request body size; refused from ``Content-Length`` before reading when
            it is given, otherwise as soon as the body read so far passes it.
        max_queue: requests waiting for the worker; beyond it, 503 with ``Retry-After``.
        max_batch_items: micro-batching (see ``serving.worker``): waiting requests run together
            up to this many items; 0 (default) meters every request in its own window.
    """

    max_items: int = 256
    max_body_bytes: int = 16 * 2**20
    max_queue: int = 1024
    max_batch_items: int = 0

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_body_bytes < 1 or self.max_queue < 1 or self.max_batch_items < 0:
            raise ConfigError(f"serving limits must be positive: {self}")


def create_app(
    served: ServedModel,
    monitor: EnergyMonitor,
    limits: ServingLimits | None = None,
    *,
    warmup: bool = True,
    warmup_example: np.ndarray | None = None,
    close_monitor: bool = True,
) -> FastAPI:
    """The application serving ``served``, metering with ``monitor``.

    Args:
        served: the model and its input spec.
        monitor: used by the inference worker only; closed at shutdown when ``close_monitor``.
        limits: request limits and micro-batching; defaults to ``ServingLimits()``.
        warmup: run one item through the model (unmetered) before serving, so the first
            request does not pay lazy initialisation; a failure there fails startup.
        warmup_example: that item (a real input); ``None``: all zeros.
    """
    limits = limits or ServingLimits()
    metrics = ServingMetrics(served.name, served.runtime)
    worker = InferenceWorker(
        served.predict, monitor, limits.max_queue, limits.max_batch_items, on_window=metrics.observe_window
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        example = served.input_spec.zeros(1) if warmup_example is None else warmup_example
        await asyncio.to_thread(worker.start, example if warmup else None)
        logger.info(
            "serving %s (%s), input %s, energy from %s",
            served.name,
            served.runtime,
            served.input_spec.describe(),
            ", ".join(f"{s.name} ({s.component})" for s in monitor.sources) or "no source",
        )
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop)
            if close_monitor:
                monitor.close()
            logger.info("stopped serving %s after %d energy windows", served.name, worker.windows_run)

    app = FastAPI(
        title=f"green-deploy: {served.name}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.served = served
    app.state.metrics = metrics
    app.state.worker = worker
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    def error_response(
        status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        metrics.errors.labels(code).inc()
        body = json.dumps(error_body(code, message)).encode()
        return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {error.detail}; routes: {ROUTES}"
        return error_response(error.status_code, code, message, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # Starlette logs the traceback and re-raises after this answer; the server goes on.
        return error_response(500, "internal_error", f"{type(error).__name__}: {error}")

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await _read_body(request, limits.max_body_bytes)
            request_kind = media_type(request.headers.get("content-type"))
            batch = parse_body(body, request_kind, served.input_spec, limits.max_items)
            future = worker.submit(batch)
            result = await asyncio.wrap_future(future)
        except InvalidRequestError as error:
            return error_response(error.status, error.code, error.message)
        except ServerBusyError as error:
            return error_response(503, "server_busy", str(error), headers={"Retry-After": "1"})
        except ModelCallError as error:
            return error_response(500, "model_error", str(error))
        metrics.observe_prediction(result.energy)
        latency_s = time.perf_counter() - started
        if _wants_npy(request.headers.get("accept"), request_kind):
            return _npy_response(served, result, latency_s)
        return _json_response(served, result, latency_s)

    @app.post("/v1/predict")
    async def predict_default(request: Request) -> Response:
        return await predict(request)

    @app.post("/v1/models/{name}/predict")
    async def predict_named(name: str, request: Request) -> Response:
        if name != served.name:
            return error_response(
                404, "unknown_model", f"model {name!r} is not served here; this server serves {served.name!r}"
            )
        return await predict(request)

    @app.get("/health")
    async def health() -> Response:
        alive = worker.alive
        body = {
            "status": "ok" if alive else "unavailable",
            "model": served.name,
            "runtime": served.runtime,
            "input": served.input_spec.to_dict(),
            "limits": asdict(limits),
            "queued": worker.queued,
            "energy_sources": [
                {"name": s.name, "component": s.component, "measured": s.measured} for s in monitor.sources
            ],
        }
        return Response(json.dumps(body).encode(), status_code=200 if alive else 503, media_type=JSON_TYPE)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    return app


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError as error:
            raise InvalidRequestError(
                400, "bad_content_length", f"Content-Length {declared!r} is not a number"
            ) from error
        if length > max_bytes:  # refused before a byte of the body is read
            raise InvalidRequestError(
                413, "payload_too_large", f"the body is {length} bytes; at most {max_bytes} are accepted"
            )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise InvalidRequestError(
                413, "payload_too_large", f"the body passed {max_bytes} bytes, the most accepted"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _wants_npy(accept: str | None, request_kind: str) -> bool:
    kinds = [media_type(part) for part in (accept or "").split(",")]
    if NPY_TYPE in kinds:
        return True
    if JSON_TYPE in kinds:
        return False
    return request_kind == NPY_TYPE


def _json_response(served: ServedModel, result: InferenceResult, latency_s: float) -> Response:
    body = json.dumps(prediction_body(served, result, latency_s), allow_nan=False)
    return Response(body.encode(), media_type=JSON_TYPE)


def _npy_response(served: ServedModel, result: InferenceResult, latency_s: float) -> Response:
    energy = result.energy
    headers = {
        "X-Model": served.name,
        "X-Energy-Joules": repr(energy.energy_j),
        "X-Energy-Joules-Per-Item": repr(energy.energy_per_item_j),
        "X-Energy-Active-Joules": "" if energy.active_energy_j is None else repr(energy.active_energy_j),
        "X-Energy-Window-Seconds": repr(energy.window_duration_s),
        "X-Energy-Measured": str(energy.measured).lower(),
        "X-Energy-Source": "; ".join(f"{c.component}={c.source}" for c in energy.components),
        "X-Energy-Components": json.dumps(energy.to_dict()["components"], separators=(",", ":")),
        "X-Latency-Seconds": repr(latency_s),
    }
    return Response(encode_npy(result.outputs), media_type=NPY_TYPE, headers=headers)


_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


def _endpoint(path: str) -> str:
    """A bounded label for a path: unknown paths all become ``other``."""
    if path == "/v1/predict" or (path.startswith("/v1/models/") and path.endswith("/predict")):
        return "predict"
    return {"/health": "health", "/metrics": "metrics"}.get(path, "other")


class _MetricsMiddleware:
    """Counts every HTTP response by endpoint and status and times it (plain ASGI, no body copy)."""

    def __init__(self, app: Callable[[_Scope, _Receive, _Send], Awaitable[None]], metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_with_status(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            endpoint = _endpoint(scope["path"])
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)

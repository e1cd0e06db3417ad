"""SageMaker's container contract over the serving core: ``GET /ping`` and ``POST /invocations``.

SageMaker extracts ``model.tar.gz`` into ``/opt/ml/model`` and runs ``docker run IMAGE serve``; the
container must answer HTTP on port 8080. This entry builds the serving core's own application
(``green_deploy.serving.create_app``) from ``code/serving.json`` and maps SageMaker's two paths
onto the core's routes, so the same handlers (validation, the metered worker, metrics) answer:

- ``/ping`` -> ``/health`` (200 while the worker runs, 503 otherwise);
- ``/invocations`` -> ``/v1/predict`` (JSON or ``.npy`` in; the JSON answer carries ``energy``).

The mapping rewrites the path before the core sees the request, so its metrics count
``/invocations`` as ``predict``. SageMaker's runtime API passes only the body and content type
back to the caller, not the core's ``X-Energy-*`` headers: callers ask for JSON
(``Accept: application/json``) to get the energy.

    python -m green_deploy.deploy.sagemaker_entry serve --model-dir /opt/ml/model --host 0.0.0.0
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import green_deploy
from green_deploy.deploy.packaging import CODE_DIR, SERVING_CONFIG, ServingConfig

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
# SageMaker path -> the serving core's route
ROUTE_MAP = {"/ping": "/health", "/invocations": "/v1/predict"}

_Scope = MutableMapping[str, Any]


class SageMakerRoutes:
    """ASGI wrapper answering SageMaker's paths with the wrapped app's routes; the rest unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in ROUTE_MAP:
            target = ROUTE_MAP[scope["path"]]
            scope = {**scope, "path": target, "raw_path": target.encode()}
        await self.app(scope, receive, send)


def build_app(model_dir: Path | str, monitor: Any = None, gpu_energy: bool = True) -> SageMakerRoutes:
    """The serving core's app for the model extracted in ``model_dir`` (``code/serving.json``
    beside the model files), with SageMaker's routes.

    Args:
        model_dir: where SageMaker extracted ``model.tar.gz`` (``/opt/ml/model``).
        monitor: an ``EnergyMonitor``; by default one over every source this machine offers.
        gpu_energy: open NVML when building the default monitor.
    """
    from green_deploy.energy import EnergyMonitor, discover_sources
    from green_deploy.serving import InputSpec, ServingLimits, create_app, load_served_model

    model_dir = Path(model_dir)
    config = ServingConfig.read(model_dir / CODE_DIR / SERVING_CONFIG)
    spec = InputSpec(config.input_dtype, config.input_shape)
    served = load_served_model(model_dir, config.runtime, spec, config.model_name, config.num_threads)
    limits = ServingLimits(config.max_items, config.max_body_bytes, config.max_queue, config.max_batch_items)
    monitor = monitor if monitor is not None else EnergyMonitor(discover_sources(gpu=gpu_energy))
    logger.info(
        "SageMaker entry: %s/%s (%s), serving core from %s",
        config.model_id,
        config.variant_id,
        config.runtime,
        Path(green_deploy.__file__).resolve().parent,
    )
    return SageMakerRoutes(create_app(served, monitor, limits))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m green_deploy.deploy.sagemaker_entry",
        description="Serve a SageMaker model directory with the green-deploy serving core (/ping, /invocations).",
    )
    parser.add_argument(
        "command", nargs="?", choices=["serve"], help="SageMaker starts containers with 'serve'"
    )
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR))
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="0.0.0.0 inside the container (SageMaker's contract)"
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT))
    )
    parser.add_argument("--log-level", default=os.environ.get("GREEN_DEPLOY_LOG_LEVEL", "info"))
    parser.add_argument("--no-gpu-energy", action="store_true", help="do not open NVML")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    from green_deploy.serving.http import JsonErrorHttpToolsProtocol

    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(args.model_dir, gpu_energy=not args.no_gpu_energy)
    # uvicorn stops gracefully on SIGTERM (how SageMaker stops a container), then re-raises the
    # signal to the handler installed before it; this one lets the process end normally (exit 0).
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _after_graceful_stop)
    uvicorn.run(
        app,
        http=JsonErrorHttpToolsProtocol,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    return 0


def _after_graceful_stop(signum: int, frame: object) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)


if __name__ == "__main__":
    raise SystemExit(main())

"""Azure ML scoring: ``init()`` and ``run(raw_data)`` over the serving core's in-process path.

Azure ML's inference server imports the deployment's ``score.py`` (a shim written next to the
vendored package, see ``azureml.SCORE_SCRIPT``), calls ``init()`` once and ``run(raw_data)`` per
request with the body as text. Here the serving core does the work without its HTTP layer:
``parse_body`` validates the request exactly as the HTTP server does, and the one metered
``InferenceWorker`` runs the model in its own energy window, so the answer carries the
provider-side energy of the request, in the same shape as the HTTP server's JSON answer:
``{"model", "runtime", "outputs", "energy", "latency_s"}``, or ``{"error": {"code", "message"}}``.

The model: Azure mounts the registered folder under ``$AZUREML_MODEL_DIR/<folder name>``
(``serving.json``'s ``model_folder``); a model dir that holds the files directly works as well.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.deploy.packaging import SERVING_CONFIG, ServingConfig

logger = logging.getLogger(__name__)

MODEL_DIR_VARIABLE = "AZUREML_MODEL_DIR"
_REQUEST_TIMEOUT_S = 300.0


class _Scorer:
    def __init__(self, config: ServingConfig, worker: Any, served: Any, monitor: Any) -> None:
        self.config = config
        self.worker = worker
        self.served = served
        self.monitor = monitor


# Azure calls init() and run() as module functions: the loaded scorer lives here between calls.
_state: dict[str, _Scorer] = {}


def model_folder(config: ServingConfig, model_dir: Path) -> Path:
    """Where the variant's files are under Azure's model dir."""
    nested = model_dir / config.model_folder
    return nested if nested.is_dir() else model_dir


def init(code_dir: Path | str | None = None, monitor: Any = None) -> None:
    """Load the model and start the metered worker (warm-up call unmetered).

    Args:
        code_dir: the folder holding ``serving.json`` (the shim passes its own folder).
        monitor: an ``EnergyMonitor``; by default one over every source this machine offers.
    """
    from green_deploy.energy import EnergyMonitor, discover_sources
    from green_deploy.serving import InferenceWorker, InputSpec, load_served_model

    code_dir = Path(code_dir) if code_dir is not None else Path(__file__).resolve().parents[2]
    config = ServingConfig.read(code_dir / SERVING_CONFIG)
    if MODEL_DIR_VARIABLE not in os.environ:
        raise RuntimeError(f"${MODEL_DIR_VARIABLE} is not set; Azure ML sets it to the mounted model folder")
    folder = model_folder(config, Path(os.environ[MODEL_DIR_VARIABLE]))
    spec = InputSpec(config.input_dtype, config.input_shape)
    served = load_served_model(folder, config.runtime, spec, config.model_name, config.num_threads)
    monitor = monitor if monitor is not None else EnergyMonitor(discover_sources())
    worker = InferenceWorker(served.predict, monitor, config.max_queue, config.max_batch_items)
    worker.start(spec.zeros(1))
    shutdown()  # a second init replaces the first scorer
    _state["scorer"] = _Scorer(config, worker, served, monitor)
    logger.info(
        "Azure ML scorer ready: %s/%s (%s) from %s",
        config.model_id,
        config.variant_id,
        config.runtime,
        folder,
    )


def run(raw_data: str | bytes) -> dict[str, Any]:
    """Score one request body (JSON ``{"inputs": [...]}``); never raises for a bad request."""
    from green_deploy.serving import InvalidRequestError, ModelCallError, ServerBusyError
    from green_deploy.serving.validation import JSON_TYPE, parse_body

    scorer = _state.get("scorer")
    if scorer is None:
        return _error("not_ready", "init() has not run")
    started = time.perf_counter()
    body = raw_data.encode() if isinstance(raw_data, str) else bytes(raw_data)
    try:
        batch = parse_body(body, JSON_TYPE, scorer.served.input_spec, scorer.config.max_items)
        result = scorer.worker.submit(batch).result(timeout=_REQUEST_TIMEOUT_S)
    except InvalidRequestError as error:
        return _error(error.code, error.message)
    except ServerBusyError as error:
        return _error("server_busy", str(error))
    except ModelCallError as error:
        return _error("model_error", str(error))
    answer: dict[str, Any] = {
        "model": scorer.served.name,
        "runtime": scorer.served.runtime,
        "outputs": None,
        "energy": result.energy.to_dict(),
        "latency_s": time.perf_counter() - started,
    }
    outputs = np.asarray(result.outputs)
    if np.issubdtype(outputs.dtype, np.floating) and not np.isfinite(outputs).all():
        # JSON has no NaN or Infinity: sent as null, as the HTTP server does
        # numpy's stubs reject None here; at runtime it gives an object array holding None
        answer["outputs"] = np.where(np.isfinite(outputs), outputs, None).tolist()  # type: ignore[call-overload]
        answer["warnings"] = [f"{int((~np.isfinite(outputs)).sum())} output values were NaN or infinite"]
    else:
        answer["outputs"] = outputs.tolist()
    return answer


def shutdown() -> None:
    """Stop the worker (Azure ends the process; tests and reloads call this)."""
    scorer = _state.pop("scorer", None)
    if scorer is not None:
        scorer.worker.stop()
        scorer.monitor.close()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}

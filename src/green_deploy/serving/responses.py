"""The JSON bodies the serving core answers with, shared by every front end (the HTTP app, a
cloud scoring script that has no HTTP layer of its own). numpy only: no web framework here."""

from __future__ import annotations

from typing import Any

import numpy as np

from green_deploy.serving.model import ServedModel
from green_deploy.serving.worker import InferenceResult


def prediction_body(served: ServedModel, result: InferenceResult, latency_s: float) -> dict[str, Any]:
    """``{"model", "runtime", "outputs", "energy", "latency_s"}`` (plus ``warnings`` when needed).

    JSON has no NaN or Infinity: such outputs are sent as ``null`` and ``warnings`` says how many.
    """
    body: dict[str, Any] = {
        "model": served.name,
        "runtime": served.runtime,
        "outputs": None,
        "energy": result.energy.to_dict(),
        "latency_s": latency_s,
    }
    outputs = np.asarray(result.outputs)
    if np.issubdtype(outputs.dtype, np.floating) and not np.isfinite(outputs).all():
        finite = np.isfinite(outputs)
        # numpy's stubs reject None here; at runtime it gives an object array holding None
        body["outputs"] = np.where(finite, outputs, None).tolist()  # type: ignore[call-overload]
        body["warnings"] = [f"{int((~finite).sum())} output values were NaN or infinite and are sent as null"]
    else:
        body["outputs"] = outputs.tolist()
    return body


def error_body(code: str, message: str) -> dict[str, Any]:
    """``{"error": {"code", "message"}}``: every refusal and failure has this shape."""
    return {"error": {"code": code, "message": message}}

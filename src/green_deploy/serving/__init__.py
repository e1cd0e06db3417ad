"""Serving any optimized variant over HTTP, with the server-side energy of every request.

A plain library (no Kedro): the deploy pipeline, a cloud scoring script and the command line
(``python -m green_deploy.serving``) all use it. ML frameworks are imported only for the runtime
served, inside functions.

    served = load_served_model(folder, "pytorch", InputSpec("float32", (1, 28, 28)))
    app = create_app(served, EnergyMonitor(discover_sources()), ServingLimits(max_items=64))
    uvicorn.run(app, host="127.0.0.1", port=8080)

Modules: ``model`` (what is served, ``predictor``), ``validation`` (bodies to arrays, 4xx
errors), ``worker`` (the one metered inference thread), ``responses`` (the JSON bodies, for front ends
without HTTP too), ``metrics`` (Prometheus), ``app`` (the routes), ``cli``.
"""

from green_deploy.serving.app import ServingLimits, create_app
from green_deploy.serving.model import InputSpec, ServedModel, load_served_model, predictor
from green_deploy.serving.responses import error_body, prediction_body
from green_deploy.serving.validation import InvalidRequestError
from green_deploy.serving.worker import InferenceWorker, ModelCallError, RequestEnergy, ServerBusyError

__all__ = [
    "InferenceWorker",
    "InputSpec",
    "InvalidRequestError",
    "ModelCallError",
    "RequestEnergy",
    "ServedModel",
    "ServerBusyError",
    "ServingLimits",
    "create_app",
    "error_body",
    "load_served_model",
    "prediction_body",
    "predictor",
]

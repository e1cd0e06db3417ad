"""The in-process target: the serving core's metered worker in this process, no HTTP.

Same ``Deployer`` protocol as the local target: ``deploy`` loads the variant with
``serving.model.load_served_model`` and starts an ``InferenceWorker`` (warm-up call included,
as the HTTP server does) with its own ``EnergyMonitor``; ``predict`` submits the batch to that
worker and waits, so each request is metered in its own energy window exactly as the server
meters it; ``teardown`` stops the worker and closes the monitor. What it leaves out is
everything around the model call: encoding, the loopback round trip, request parsing and
validation, the event loop. ``green_deploy.deploy.compare`` measures that difference.

The deployments live as long as the ``InProcessDeployer`` that made them (nothing is recorded
on disk; ``work_dir`` is kept for the protocol).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_deploy.deploy.base import STATUS_IN_SERVICE, Deployment, DeploymentError, ServerEnergy, Variant
from green_deploy.serving.model import ServedModel, load_served_model, serving_path
from green_deploy.serving.worker import InferenceWorker, ModelCallError, ServerBusyError

logger = logging.getLogger(__name__)

TARGET = "inprocess"


@dataclass
class _Running:
    served: ServedModel
    worker: InferenceWorker
    monitor: Any


class InProcessDeployer:
    """Runs variants in this process through the serving core's metered worker.

    Args:
        work_dir: unused (nothing is written); kept for the ``Deployer`` protocol.
        threads: intra-op threads (as the server's ``--threads``); ``None``: the runtime decides.
        device: where the model runs (as the server's ``--device``).
        gpu_energy: open NVML as well (as a server without ``--no-gpu-energy``).
        max_items: the most items one ``predict`` may carry (the server's ``--max-items``).
        cost_per_hour_usd, pue: this machine's, as for the local target (``pue`` ``None``: the
            energy core's default for ``local``).
        idle_s: seconds of idle power measured before each variant serves (as the server's
            ``--idle-seconds``), for active energy; 0: none.
        keras_mode: how Keras variants are called (as the server's ``--keras-mode``).
    """

    target = TARGET
    dry_run = False

    def __init__(
        self,
        work_dir: Path | str = ".",
        *,
        threads: int | None = None,
        device: str = "cpu",
        gpu_energy: bool = True,
        max_items: int = 256,
        cost_per_hour_usd: float | None = None,
        pue: float | None = None,
        idle_s: float = 0.0,
        keras_mode: str = "graph",
    ) -> None:
        from green_deploy.energy.carbon import pue_for

        self.work_dir = Path(work_dir)
        self.threads = threads
        self.device = device
        self.gpu_energy = gpu_energy
        self.max_items = max_items
        self.cost_per_hour_usd = cost_per_hour_usd
        self.pue = pue_for("local", pue)
        self.idle_s = idle_s
        self.keras_mode = keras_mode
        self._running: dict[str, _Running] = {}

    def deploy(self, variant: Variant) -> Deployment:
        """Load ``variant`` and start its worker (again, when it was deployed already)."""
        served = load_served_model(
            variant.folder,
            variant.runtime,
            variant.input_spec,
            variant.variant_id,
            self.threads,
            self.device,
            self.keras_mode,
        )
        resources = {
            "variant_dir": str(variant.folder),
            "serving_path": serving_path(variant.runtime, self.keras_mode),
        }
        return self.serve(variant.model_id, served, resources, variant.example)

    def serve(
        self,
        model_id: str,
        served: ServedModel,
        resources: dict[str, str] | None = None,
        warmup_example: np.ndarray | None = None,
    ) -> Deployment:
        """Start a worker for a model already in memory (e.g. a hub architecture built here) under
        ``model_id``/``served.name``; ``deploy`` is this after loading a variant folder. The
        warm-up call runs ``warmup_example`` (``None``: an all-zeros item)."""
        from green_deploy.energy import EnergyMonitor, discover_sources

        key = f"{model_id}/{served.name}"
        if key in self._running:
            self._stop(key)
        monitor = EnergyMonitor(discover_sources(gpu=self.gpu_energy))
        if self.idle_s > 0:
            monitor.measure_idle(self.idle_s)
        worker = InferenceWorker(served.predict, monitor)
        try:
            worker.start(served.input_spec.zeros(1) if warmup_example is None else warmup_example)
        except BaseException:
            monitor.close()
            raise
        self._running[key] = _Running(served, worker, monitor)
        logger.info("%s (%s) runs in process %d", key, served.runtime, os.getpid())
        return Deployment(
            target=TARGET,
            model_id=model_id,
            variant_id=served.name,
            endpoint_name=key,
            endpoint_url=f"inprocess://{key}",
            region="localhost",
            instance_type=f"pid {os.getpid()}",
            instance_count=1,
            status=STATUS_IN_SERVICE,
            cost_per_hour_usd=self.cost_per_hour_usd,
            pue=self.pue,
            resources={"pid": str(os.getpid()), "runtime": served.runtime, **(resources or {})},
        )

    def predict(self, deployment: Deployment, inputs: np.ndarray) -> tuple[np.ndarray, ServerEnergy]:
        """Run one batch through the worker; its outputs and its energy window's figures."""
        running = self._running.get(deployment.endpoint_name)
        if running is None:
            raise DeploymentError(f"{deployment.endpoint_name} is not deployed in this process")
        batch = np.asarray(inputs)
        spec = running.served.input_spec
        if batch.ndim < 1 or tuple(batch.shape[1:]) != spec.shape or batch.dtype != spec.numpy_dtype:
            raise DeploymentError(
                f"{deployment.endpoint_name} takes {spec.describe()}; got {batch.dtype.name} {batch.shape}"
            )
        if not 1 <= len(batch) <= self.max_items:
            raise DeploymentError(f"a batch holds 1 to {self.max_items} items; got {len(batch)}")
        try:
            result = running.worker.submit(batch).result()
        except (ModelCallError, ServerBusyError) as error:
            raise DeploymentError(f"{deployment.endpoint_name}: {error}") from error
        return np.asarray(result.outputs), ServerEnergy.from_response(result.energy.to_dict())

    def teardown(self, deployment: Deployment) -> None:
        """Stop the worker and close its energy monitor; nothing to do when it is gone."""
        self._stop(deployment.endpoint_name)

    def teardown_all(self) -> None:
        for key in list(self._running):
            self._stop(key)

    def _stop(self, key: str) -> None:
        running = self._running.pop(key, None)
        if running is None:
            return
        running.worker.stop()
        running.monitor.close()
        del running
        _release_gpu_memory()
        logger.info("stopped %s in process", key)


def _release_gpu_memory() -> None:
    """Give a stopped model's GPU memory back to the driver (PyTorch keeps freed blocks cached for
    the process), so the next variant served in this process holds, and is measured holding, its
    own memory alone."""
    torch = sys.modules.get("torch")  # never imported here for a CPU-only study
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()

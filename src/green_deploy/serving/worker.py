"""One inference thread that meters every call in its own energy window.

Why one worker: the energy sources are machine- or process-wide counters (an NVML energy
counter for the whole GPU, RAPL for the whole package, this process's CPU time). A window
reports everything the component spent between its two reads, whoever spent it. If two
requests ran inference at once, each window would contain both computations and the sum of
per-request energies would exceed what the machine spent: double counting. With every model
call on this single thread, windows never overlap, so per-request figures add up to at most
the total, and the ``EnergyMonitor`` (not thread-safe) is touched by one thread only.

What a window holds: the model call for the batch, not the parsing of the request or the
writing of the response, which run concurrently on the event loop. A process-wide source
(``cpu_time_tdp_estimate``, RAPL, NVML) still counts whatever else ran during the window, so
under load a window also carries some of the event loop's parsing of queued requests; that is
the source's resolution, and it is not counted twice.

Micro-batching (optional, ``max_batch_items > 0``): requests already waiting when the worker
becomes free are run as one batch in one window, up to ``max_batch_items`` items; each request
gets the window's energy in proportion to its items, and its record says so (``requests`` and
``items`` of the window). With it off, every request is its own window.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

import numpy as np

from green_deploy.energy import ComponentEnergy, EnergyMeasurement, EnergyMonitor
from green_deploy.errors import ConfigError, GreenDeployError
from green_deploy.serving.model import Predict

logger = logging.getLogger(__name__)


class ServerBusyError(GreenDeployError):
    """The queue of waiting requests is full; the client should retry later (HTTP 503)."""


class ModelCallError(GreenDeployError):
    """The model raised or returned something unusable for a valid request (HTTP 500)."""


@dataclass(frozen=True)
class RequestEnergy:
    """The server-side energy of one request: its share of the window its inference ran in.

    ``components`` are the window's per-component figures times ``share`` (this request's items
    over the window's items; 1.0 without micro-batching). ``measured`` is True only when every
    component came from a hardware meter. Energies in joules, durations in seconds.
    """

    energy_j: float
    n_items: int
    components: tuple[ComponentEnergy, ...]
    measured: bool
    active_energy_j: float | None
    share: float
    window_duration_s: float
    window_items: int
    window_requests: int
    warnings: tuple[str, ...]

    @property
    def energy_per_item_j(self) -> float:
        return self.energy_j / self.n_items

    def to_dict(self) -> dict[str, object]:
        return {
            "joules": self.energy_j,
            "joules_per_item": self.energy_per_item_j,
            "active_joules": self.active_energy_j,
            "measured": self.measured,
            "components": [
                {"component": c.component, "source": c.source, "measured": c.measured, "energy_j": c.energy_j}
                for c in self.components
            ],
            "window": {
                "duration_s": self.window_duration_s,
                "items": self.window_items,
                "requests": self.window_requests,
                "share": self.share,
            },
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class InferenceResult:
    outputs: np.ndarray
    energy: RequestEnergy


@dataclass
class _Job:
    inputs: np.ndarray
    future: Future[InferenceResult]


def share_of(measurement: EnergyMeasurement, n_items: int, n_requests: int) -> RequestEnergy:
    """The part of ``measurement`` that belongs to a request of ``n_items`` items."""
    share = n_items / measurement.n_items
    components = tuple(
        replace(
            c,
            energy_j=c.energy_j * share,
            active_energy_j=None if c.active_energy_j is None else c.active_energy_j * share,
        )
        for c in measurement.components
    )
    active = measurement.active_energy_j
    return RequestEnergy(
        energy_j=sum(c.energy_j for c in components),
        n_items=n_items,
        components=components,
        measured=measurement.measured,
        active_energy_j=None if active is None else active * share,
        share=share,
        window_duration_s=measurement.duration_s,
        window_items=measurement.n_items,
        window_requests=n_requests,
        warnings=measurement.warnings,
    )


class InferenceWorker:
    """Runs ``predict`` on one thread, each call inside an energy window; see the module docstring.

    Args:
        predict: batch in, batch out (one output row per input row).
        monitor: the energy monitor; only this worker's thread opens windows on it.
        max_queue: requests allowed to wait; beyond it ``submit`` raises ``ServerBusyError``.
        max_batch_items: micro-batching limit in items; 0 runs every request alone.
        on_window: called on the worker thread after each window with the measurement and the
            number of requests that shared it (metrics).
    """

    def __init__(
        self,
        predict: Predict,
        monitor: EnergyMonitor,
        max_queue: int = 1024,
        max_batch_items: int = 0,
        on_window: Callable[[EnergyMeasurement, int], None] | None = None,
    ):
        if max_queue < 1 or max_batch_items < 0:
            raise ConfigError(
                f"max_queue must be >= 1 and max_batch_items >= 0; got {max_queue}, {max_batch_items}"
            )
        self._predict = predict
        self._monitor = monitor
        self._max_queue = max_queue
        self._max_batch_items = max_batch_items
        self._on_window = on_window
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._windows = itertools.count()
        self.windows_run = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def start(self, warmup: np.ndarray | None = None) -> None:
        """Start the thread; with ``warmup``, first run it once unmetered (lazy initialisation,
        first-call compilation) and return only when that is done, raising what it raised."""
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(warmup, ready), name="inference-worker", daemon=True
        )
        self._thread.start()
        ready.result()

    def submit(self, inputs: np.ndarray) -> Future[InferenceResult]:
        future: Future[InferenceResult] = Future()
        with self._wake:
            if self._stopping or self._thread is None:
                raise ServerBusyError("the inference worker is not running (starting or shutting down)")
            if len(self._jobs) >= self._max_queue:
                raise ServerBusyError(
                    f"{len(self._jobs)} requests are waiting already (max_queue); retry later"
                )
            self._jobs.append(_Job(inputs, future))
            self._wake.notify()
        return future

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the queued requests, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("inference worker did not stop within %.0f s", timeout_s)

    # ---- the thread ---------------------------------------------------------------------
    def _run(self, warmup: np.ndarray | None, ready: Future[None]) -> None:
        if warmup is not None:
            try:
                started = time.perf_counter()
                self._predict(warmup)
                logger.info("warm-up call took %.3f s (not metered)", time.perf_counter() - started)
            except BaseException as error:
                self._stopping = True
                ready.set_exception(error)
                return
        ready.set_result(None)
        while True:
            with self._wake:
                while not self._jobs and not self._stopping:
                    self._wake.wait()
                if not self._jobs:
                    return  # stopping and drained
                batch = self._take_batch()
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if batch:
                self._run_batch(batch)

    def _take_batch(self) -> list[_Job]:
        batch = [self._jobs.popleft()]
        items = len(batch[0].inputs)
        while self._jobs and items + len(self._jobs[0].inputs) <= self._max_batch_items:
            job = self._jobs.popleft()
            batch.append(job)
            items += len(job.inputs)
        return batch

    def _run_batch(self, batch: list[_Job]) -> None:
        inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([job.inputs for job in batch])
        name = f"request-window-{next(self._windows)}"
        try:
            measurement, outputs, failure = self._metered_call(name, inputs)
        except Exception as error:  # the monitor itself failed: no figure to give
            logger.exception("energy window %s failed", name)
            failure, measurement, outputs = error, None, None
        self.windows_run += 1
        if measurement is not None and self._on_window is not None:
            try:
                self._on_window(measurement, len(batch))
            except Exception:
                logger.exception("on_window hook failed")
        if failure is not None or measurement is None or outputs is None:
            message = f"{type(failure).__name__}: {failure}" if failure is not None else "no result"
            for job in batch:
                job.future.set_exception(ModelCallError(f"the model call failed: {message}"))
            return
        start = 0
        for job in batch:
            n = len(job.inputs)
            energy = share_of(measurement, n, len(batch))
            job.future.set_result(InferenceResult(outputs[start : start + n], energy))
            start += n

    def _metered_call(
        self, name: str, inputs: np.ndarray
    ) -> tuple[EnergyMeasurement, np.ndarray | None, Exception | None]:
        outputs: np.ndarray | None = None
        failure: Exception | None = None
        self._monitor.begin_window(name)
        try:
            outputs = np.asarray(self._predict(inputs))
        except Exception as error:  # a failing model call fails its requests, not the server
            logger.warning("model call failed on a batch of %d: %s", len(inputs), error, exc_info=True)
            failure = error
        finally:
            measurement = self._monitor.end_window(name, n_items=len(inputs))
        if outputs is not None and (outputs.ndim == 0 or len(outputs) != len(inputs)):
            failure = ValueError(f"the model returned {outputs.shape} for {len(inputs)} inputs")
            outputs = None
        return measurement, outputs, failure

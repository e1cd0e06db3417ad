"""Measuring one deployed variant: warm-up, accuracy on its evaluation items, and cells of
adaptive repetitions, all through the target's ``Deployer.predict``.

The energy of a request is what the serving core metered on the machine that ran it (the
``ServerEnergy`` of the response), so the same code measures a local server, the in-process
worker or a cloud endpoint. Latency and throughput are the client's view: wall time around each
``predict``, requests sent one after the other (concurrency 1), so a window never holds two
requests and J/inference is the energy of the work itself. Cells under load
(``evaluate.under_load``) send from several clients at once; the servers' windows then overlap,
and the server metered from outside is the figure to compare.

The GPU is the exception: NVML's energy counter steps about every 100 ms and one read costs
~3.4 ms on the H100 machine (MEASUREMENT_NOTES.md), so read around each millisecond request it
shows mostly 0 or a whole step and adds 7 ms to every request. For a target on this machine the
harness therefore reads the counter itself, around each repetition (a contiguous window of at
least ``repetition_s``), and the servers run without NVML so the GPU is counted once.

A server on this machine is also metered from outside, around each repetition
(``ServerMeter``: its whole process tree's CPU time and memory, RAPL where readable): the
``server_*`` figures, taken the same way whatever the stack, so serving stacks are compared
alike. A provider's stack (TorchServe, Azure ML's server) reports no energy per request; for it
the server meter's figures are the cell's energy, each request's the repetition's share, and the
record says so (``*_window: repetition``).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from green_deploy.deploy.base import Deployer, Deployment, ServerEnergy
from green_deploy.energy import EnergyMonitor
from green_deploy.evaluate.accuracy import arrays_sha256, metric_interval, subset_indices
from green_deploy.evaluate.repetitions import Interval, RepeatedMeasurement, repeat_until_precise
from green_deploy.evaluate.study import ProtocolSettings
from green_deploy.zoo.builder import score_items
from green_deploy.zoo.metrics import metric_values, task_metrics

COMPONENTS = ("cpu", "gpu", "dram")


@dataclass(frozen=True)
class EvaluationSet:
    """A model's evaluation items as its models take it, and how they are scored.

    ``x`` holds the items scored (examples, queries or byte windows); for retrieval, ``pairs``
    holds every document and ``answers`` the index of each query's document (``None``: query i
    answers to document i). ``n_split_items`` is the size of the whole split the items were
    drawn from (``None``: these are the whole split).
    """

    task: str
    metric: str
    x: np.ndarray
    y: np.ndarray | None
    pairs: np.ndarray | None = None
    domain: str = ""
    answers: np.ndarray | None = None
    n_split_items: int | None = None

    @property
    def n_items(self) -> int:
        return len(self.x)

    @property
    def split_items(self) -> int:
        return self.n_items if self.n_split_items is None else self.n_split_items

    @cached_property
    def items_sha256(self) -> str:
        return arrays_sha256(self.x, self.y, self.pairs, self.answers)

    def subset(self, max_items: int | None, seed: int) -> EvaluationSet:
        """At most ``max_items`` of these items (``accuracy.subset_indices``: stratified by label
        for classification); the whole set when it is not larger."""
        labels = self.y if self.task == "classification" else None
        index = subset_indices(self.n_items, max_items, seed, labels)
        if len(index) == self.n_items:
            return self
        answers = index if self.answers is None else self.answers[index]
        return replace(
            self,
            x=self.x[index],
            y=None if self.y is None else self.y[index],
            answers=answers if self.pairs is not None else None,
            n_split_items=self.split_items,
        )


@dataclass(frozen=True)
class Repetition:
    """Requests sent back to back for at least the protocol's ``repetition_s``."""

    index: int
    n_requests: int
    n_items: int
    duration_s: float
    energy_j: float
    active_energy_j: float | None
    component_energy_j: dict[str, float]
    latencies_s: tuple[float, ...] = field(repr=False)
    server_energy_j: float | None = None
    gpu_memory_bytes: int | None = None  # at the repetition's end (``RepetitionMeter``)

    @property
    def server_energy_per_item_j(self) -> float | None:
        return None if self.server_energy_j is None else self.server_energy_j / self.n_items

    @property
    def energy_per_item_j(self) -> float:
        return self.energy_j / self.n_items

    def to_row(self) -> dict[str, Any]:
        """One row of the repetitions table (latencies summarised, not listed)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("component_energy_j", "latencies_s")}
        row["energy_per_item_j"] = self.energy_per_item_j
        row["server_energy_per_item_j"] = self.server_energy_per_item_j
        row["active_energy_per_item_j"] = (
            None if self.active_energy_j is None else self.active_energy_j / self.n_items
        )
        for component in COMPONENTS:
            energy_j = self.component_energy_j.get(component)
            row[f"{component}_energy_per_item_j"] = None if energy_j is None else energy_j / self.n_items
        row["latency_p50_s"] = float(np.median(self.latencies_s))
        return row


@dataclass(frozen=True)
class SourceOf:
    """Which source metered a component, whether it is a hardware measurement, and over which
    windows: each ``request`` (by the server) or each ``repetition`` (by the harness)."""

    source: str
    measured: bool
    window: str = "request"


class RepetitionMeter:
    """The GPU energy counter of this machine, read by the harness around each repetition (see
    the module docstring). ``idle_s`` of idle power is measured when it opens (at least
    ``MIN_IDLE_S``: a counter that steps every ~100 ms needs seconds to give a baseline)."""

    MIN_IDLE_S = 2.0

    def __init__(self, monitor: EnergyMonitor, counter: Any | None = None) -> None:
        self.monitor = monitor
        self._counter = counter
        self._memory_origin_bytes = counter.memory_used_bytes() if counter is not None else 0

    def gpu_memory_bytes(self) -> int | None:
        """GPU memory in use now above what was in use when the meter opened (before the study
        loaded a model): the served model's weights, activations, the CUDA context and PyTorch's
        cache; ``None`` where the counter cannot tell."""
        if self._counter is None:
            return None
        return max(self._counter.memory_used_bytes() - self._memory_origin_bytes, 0)

    @classmethod
    def open(cls, idle_s: float, nvml: Any | None = None) -> RepetitionMeter | None:
        """The meter, or ``None`` where this machine has no NVML energy counter: the edge-corrected
        counter (``discover_sources``' choice), else the plain one."""
        from green_deploy.energy.sources.base import SourceUnavailableError
        from green_deploy.energy.sources.nvml import open_energy_counter

        try:
            counter = open_energy_counter(nvml)
        except SourceUnavailableError:
            return None
        monitor = EnergyMonitor([counter])
        monitor.measure_idle(max(idle_s, cls.MIN_IDLE_S))
        return cls(monitor, counter)

    def close(self) -> None:
        self.monitor.close()


class ServerMeter:
    """One server's energy measured from outside: its process tree (``energy.sources.process_tree``)
    and RAPL where readable (whole-machine: it counts this client too, and its name says so)."""

    def __init__(self, monitor: EnergyMonitor) -> None:
        self.monitor = monitor

    @classmethod
    def of(cls, deployment: Deployment) -> ServerMeter | None:
        """The meter of a deployment's server process on this machine; ``None`` for one with none
        (a cloud endpoint) or that runs in this very process (the in-process worker: its energy is
        its own windows')."""
        pid = deployment.resources.get("pid")
        if not pid or int(pid) == os.getpid():
            return None
        return cls.open(int(pid))

    @classmethod
    def open(cls, pid: int) -> ServerMeter | None:
        """The meter of the server process ``pid``; ``None`` where ``/proc`` cannot show it."""
        from green_deploy.energy.sources.base import SourceUnavailableError
        from green_deploy.energy.sources.process_tree import process_tree_sources
        from green_deploy.energy.sources.rapl import available_rapl_sources

        try:
            tree = process_tree_sources(pid)
        except SourceUnavailableError:
            return None
        return cls(EnergyMonitor([*available_rapl_sources(), *tree]))

    def close(self) -> None:
        self.monitor.close()


@dataclass(frozen=True)
class AccuracyResult:
    """The task metrics on the evaluation items, each with its confidence interval
    (``intervals[metric] = [low, high]``, computed by ``methods[metric]``), and what the pass
    cost on the server."""

    metrics: dict[str, float]
    n_items: int
    energy_j: float
    duration_s: float
    n_split_items: int
    intervals: dict[str, list[float]]
    methods: dict[str, str]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CellMeasurement:
    repeated: RepeatedMeasurement[Repetition]
    sources: dict[str, SourceOf]
    warnings: tuple[str, ...]
    server_sources: dict[str, SourceOf] = field(default_factory=dict)

    @property
    def repetitions(self) -> list[Repetition]:
        return self.repeated.repetitions

    @property
    def interval(self) -> Interval:
        return self.repeated.interval


class Client:
    """``predict`` on one deployment that keeps what the responses said about their energy."""

    def __init__(self, deployer: Deployer, deployment: Deployment, max_items: int) -> None:
        self.deployer = deployer
        self.deployment = deployment
        self.max_items = max_items
        self.sources: dict[str, SourceOf] = {}
        self.server_sources: dict[str, SourceOf] = {}  # what metered the server from outside
        self.warnings: set[str] = set()

    def send(self, batch: np.ndarray) -> tuple[np.ndarray, ServerEnergy, float]:
        """One request; its outputs, energy and client-side wall time."""
        started = time.perf_counter()
        outputs, energy = self.deployer.predict(self.deployment, batch)
        latency_s = time.perf_counter() - started
        for component in energy.components:
            self.sources.setdefault(
                str(component["component"]), SourceOf(str(component["source"]), bool(component["measured"]))
            )
        self.warnings.update(str(w) for w in energy.raw.get("warnings") or ())
        return outputs, energy, latency_s

    def predict_all(self, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
        """Outputs of every item of ``x`` in requests of at most ``batch_size`` items, and the
        server-side energy of them all."""
        step = min(batch_size, self.max_items)
        parts, energy_j = [], 0.0
        for start in range(0, len(x), step):
            outputs, energy, _ = self.send(x[start : start + step])
            parts.append(outputs)
            energy_j += energy.energy_j
        return np.concatenate(parts), energy_j


def measure_accuracy(
    client: Client, data: EvaluationSet, batch_size: int, confidence: float = 0.95, seed: int = 0
) -> AccuracyResult:
    """The task metrics of the deployment on the evaluation items (``zoo.builder.score_items``,
    the scoring the zoo used for its baselines), each with its ``confidence`` interval
    (``evaluate.accuracy.metric_interval``: Wilson or bootstrap, as fits the metric)."""
    energy = [0.0]

    def predict(x: np.ndarray) -> np.ndarray:
        outputs, energy_j = client.predict_all(np.asarray(x), batch_size)
        energy[0] += energy_j
        return outputs

    started = time.perf_counter()
    evidence, _ = score_items(data.task, predict, data.x, data.y, data.pairs, data.answers)
    duration_s = time.perf_counter() - started
    metrics = task_metrics(data.task)
    intervals = {
        name: metric_interval(metric, evidence, confidence, seed) for name, metric in metrics.items()
    }
    return AccuracyResult(
        metrics=metric_values(evidence),
        n_items=data.n_items,
        energy_j=energy[0],
        duration_s=duration_s,
        n_split_items=data.split_items,
        intervals={name: [i.low, i.high] for name, i in intervals.items()},
        methods={name: i.method for name, i in intervals.items()},
        confidence=confidence,
    )


def batches(x: np.ndarray, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless batches of real evaluation inputs: a seeded shuffle of ``x``, cut in order, wrapping."""
    order = np.random.default_rng(seed).permutation(len(x))
    if len(order) < batch_size:
        order = np.resize(order, batch_size)
    position = 0
    while True:
        if position + batch_size > len(order):
            position = 0
        yield x[order[position : position + batch_size]]
        position += batch_size


def warm_up(client: Client, inputs: Iterator[np.ndarray], duration_s: float) -> int:
    """Requests for ``duration_s`` (at least one) so that caches, allocators and lazy
    initialisation are settled before anything is measured; the number sent."""
    deadline, sent = time.perf_counter() + duration_s, 0
    while sent == 0 or time.perf_counter() < deadline:
        client.send(next(inputs))
        sent += 1
    return sent


def send_for(
    client: Client, inputs: Iterator[np.ndarray], duration_s: float, concurrency: int = 1
) -> list[tuple[int, ServerEnergy, float]]:
    """Requests back to back for ``duration_s`` (at least one) from ``concurrency`` clients at
    once, each sending its next request when its last is answered; (items, energy, latency) of
    every request."""
    sent: list[tuple[int, ServerEnergy, float]] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def loop() -> None:
        while True:
            with lock:
                if sent and time.perf_counter() - started >= duration_s:
                    return
                batch = next(inputs)
            _, energy, latency_s = client.send(batch)
            with lock:
                sent.append((len(batch), energy, latency_s))

    if concurrency == 1:
        loop()
        return sent
    clients = [threading.Thread(target=loop, name=f"client-{i}") for i in range(concurrency)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    return sent


def measure_repetition(
    client: Client,
    inputs: Iterator[np.ndarray],
    duration_s: float,
    index: int,
    meter: RepetitionMeter | None = None,
    server_meter: ServerMeter | None = None,
    concurrency: int = 1,
) -> Repetition:
    """Requests back to back until ``duration_s`` has passed (at least one), from ``concurrency``
    clients at once; with a ``meter``, its counter's energy over the whole repetition is added to
    what the server metered; with a ``server_meter``, the server's own energy over it is kept
    beside (and is the repetition's energy where the server reported none)."""
    n_items, energy_j, active_j = 0, 0.0, 0.0
    components: dict[str, float] = {}
    active_known = True
    meters = [m.monitor for m in (server_meter, meter) if m is not None]
    for monitor in meters:
        monitor.begin_window("repetition")
    started = time.perf_counter()
    sent = send_for(client, inputs, duration_s, concurrency)
    repetition_s = time.perf_counter() - started
    for items, energy, _ in sent:
        n_items += items
        energy_j += energy.energy_j
        if energy.active_energy_j is None:
            active_known = False
        else:
            active_j += energy.active_energy_j
        for component in energy.components:
            name = str(component["component"])
            components[name] = components.get(name, 0.0) + float(component["energy_j"])
    readings: list[Any] = []
    server_energy_j = None
    gpu_memory_bytes = None
    if meter is not None:
        window = meter.monitor.end_window("repetition", n_items)
        client.warnings.update(window.warnings)
        readings.extend(window.components)
        gpu_memory_bytes = meter.gpu_memory_bytes()
    if server_meter is not None:
        window = server_meter.monitor.end_window("repetition", n_items)
        server_energy_j = window.total_energy_j
        for reading in window.components:
            client.server_sources.setdefault(
                reading.component, SourceOf(reading.source, reading.measured, "repetition")
            )
        if not components:  # the server reported nothing: its tree's figures are the repetition's
            client.warnings.update(window.warnings)
            active_known = False
            metered = {reading.component for reading in readings}
            readings.extend(r for r in window.components if r.component not in metered)
    for reading in readings:
        client.sources.setdefault(reading.component, SourceOf(reading.source, reading.measured, "repetition"))
        components[reading.component] = components.get(reading.component, 0.0) + reading.energy_j
        energy_j += reading.energy_j
        if reading.active_energy_j is None:
            active_known = False
        else:
            active_j += reading.active_energy_j
    return Repetition(
        index=index,
        n_requests=len(sent),
        n_items=n_items,
        duration_s=repetition_s,
        energy_j=energy_j,
        active_energy_j=active_j if active_known else None,
        component_energy_j=components,
        latencies_s=tuple(latency for _, _, latency in sent),
        server_energy_j=server_energy_j,
        gpu_memory_bytes=gpu_memory_bytes,
    )


def measure_cell(
    client: Client,
    inputs: Iterator[np.ndarray],
    protocol: ProtocolSettings,
    on_repetition: Callable[[Repetition], None] | None = None,
    meter: RepetitionMeter | None = None,
    server_meter: ServerMeter | None = None,
    concurrency: int = 1,
) -> CellMeasurement:
    """Repetitions of one cell until J/inference is as precise as the protocol asks."""
    client.warnings.clear()
    client.server_sources.clear()

    def once(index: int) -> Repetition:
        repetition = measure_repetition(
            client, inputs, protocol.repetition_s, index, meter, server_meter, concurrency
        )
        if on_repetition is not None:
            on_repetition(repetition)
        return repetition

    repeated = repeat_until_precise(
        once,
        lambda r: r.energy_per_item_j,
        protocol.ci_target,
        protocol.confidence,
        protocol.min_repetitions,
        protocol.max_repetitions,
        protocol.max_cell_s,
    )
    return CellMeasurement(
        repeated, dict(client.sources), tuple(sorted(client.warnings)), dict(client.server_sources)
    )


def summarize(measurement: CellMeasurement) -> dict[str, Any]:
    """The cell's figures: J/inference with its interval, per component and active; latency
    percentiles over every request; throughput over the repetitions' wall time."""
    reps = measurement.repetitions
    interval = measurement.interval
    n_items = sum(r.n_items for r in reps)
    duration_s = sum(r.duration_s for r in reps)
    latencies_ms = np.array([latency for r in reps for latency in r.latencies_s]) * 1000.0
    row: dict[str, Any] = {
        "energy_per_item_j": sum(r.energy_j for r in reps) / n_items,
        "energy_per_item_j_mean": interval.mean,
        "energy_per_item_j_ci_low": interval.low,
        "energy_per_item_j_ci_high": interval.high,
        "energy_ci_relative_half_width": _finite_or_none(interval.relative_half_width),
        "energy_cv": _finite_or_none(interval.cv),
        "ci_target": measurement.repeated.target,
        "ci_confidence": interval.confidence,
        "ci_reached": measurement.repeated.reached,
        "stopped_by": measurement.repeated.stopped_by,
        "n_repetitions": len(reps),
        "n_requests": sum(r.n_requests for r in reps),
        "n_items": n_items,
        "measured_duration_s": duration_s,
        "active_energy_per_item_j": (
            None
            if any(r.active_energy_j is None for r in reps)
            else sum(r.active_energy_j or 0.0 for r in reps) / n_items
        ),
        "energy_measured": bool(measurement.sources)
        and all(s.measured for s in measurement.sources.values()),
        "latency_p50_ms": float(np.percentile(latencies_ms, 50)),
        "latency_p95_ms": float(np.percentile(latencies_ms, 95)),
        "latency_p99_ms": float(np.percentile(latencies_ms, 99)),
        "throughput_items_per_s": n_items / duration_s if duration_s > 0 else None,
        "duration_per_item_s": duration_s / n_items,
        "energy_warnings": "; ".join(measurement.warnings),
        "server_energy_per_item_j": (
            None
            if any(r.server_energy_j is None for r in reps)
            else sum(r.server_energy_j or 0.0 for r in reps) / n_items
        ),
        # what metered the server from outside, per component in order, and whether all of it
        # came from hardware meters
        "server_energy_sources": ", ".join(
            measurement.server_sources[c].source for c in COMPONENTS if c in measurement.server_sources
        ),
        "server_energy_measured": bool(measurement.server_sources)
        and all(s.measured for s in measurement.server_sources.values()),
        "gpu_memory_peak_bytes": max(
            (r.gpu_memory_bytes for r in reps if r.gpu_memory_bytes is not None), default=None
        ),
    }
    for component in COMPONENTS:
        source = measurement.sources.get(component)
        total = sum(r.component_energy_j.get(component, 0.0) for r in reps)
        row[f"{component}_energy_per_item_j"] = None if source is None else total / n_items
        row[f"{component}_source"] = "" if source is None else source.source
        row[f"{component}_measured"] = None if source is None else source.measured
        row[f"{component}_window"] = "" if source is None else source.window
    return row


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None

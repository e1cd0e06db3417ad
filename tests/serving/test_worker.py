"""The one metered inference thread: windows, micro-batching shares, failures, queue and stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from green_deploy.energy import EnergyMonitor
from green_deploy.serving.worker import InferenceWorker, ModelCallError, ServerBusyError


class JoulesPerCall:
    """A measured source that advances by ``joules`` per model call, so shares are exact."""

    name, component, measured, resolution_s = "per_call_meter", "gpu", True, 0.0

    def __init__(self, joules: float):
        self.joules, self.energy_j = joules, 0.0

    def read_j(self) -> float:
        return self.energy_j

    def close(self) -> None:
        pass


class GatedModel:
    """Doubles its input; the first call waits for ``gate`` so the test can queue requests."""

    def __init__(self, meter: JoulesPerCall):
        self.meter, self.gate, self.entered, self.calls = meter, threading.Event(), threading.Event(), []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(len(x))
        self.meter.energy_j += self.meter.joules
        if (x < 0).any():
            raise RuntimeError("negative input")
        return x * 2.0


def _worker(max_batch_items=0, max_queue=16, joules=6.0):
    meter = JoulesPerCall(joules)
    model = GatedModel(meter)
    windows = []
    worker = InferenceWorker(
        model,
        EnergyMonitor([meter]),
        max_queue,
        max_batch_items,
        on_window=lambda m, n: windows.append((m, n)),
    )
    return worker, model, windows


def _items(n, value=1.0):
    return np.full((n, 3), value, dtype=np.float32)


def test_every_request_is_its_own_window_without_micro_batching():
    worker, model, windows = _worker()
    model.gate.set()
    worker.start()
    results = [worker.submit(_items(n)).result(5) for n in (1, 2, 3)]
    worker.stop()
    assert model.calls == [1, 2, 3]
    assert [r.energy.energy_j for r in results] == [6.0, 6.0, 6.0]
    assert [r.energy.share for r in results] == [1.0, 1.0, 1.0]
    assert all(r.energy.measured and r.energy.window_requests == 1 for r in results)
    assert [n for _, n in windows] == [1, 1, 1]
    np.testing.assert_array_equal(results[2].outputs, _items(3, 2.0))


def test_waiting_requests_share_one_window_in_proportion_to_their_items():
    worker, model, windows = _worker(max_batch_items=6)
    worker.start()
    first = worker.submit(_items(1, 1.0))
    assert model.entered.wait(5)  # the worker is busy with the first request
    waiting = [worker.submit(_items(n, float(n))) for n in (1, 2, 3, 4)]
    model.gate.set()
    results = [f.result(5) for f in waiting]
    first.result(5)
    worker.stop()
    # 1 + 2 + 3 items fit max_batch_items=6; the 4-item request gets a window of its own.
    assert model.calls == [1, 6, 4]
    assert [r.energy.energy_j for r in results] == pytest.approx([1.0, 2.0, 3.0, 6.0])
    assert [r.energy.window_requests for r in results] == [3, 3, 3, 1]
    assert [r.energy.window_items for r in results] == [6, 6, 6, 4]
    assert sum(r.energy.energy_j for r in results[:3]) == pytest.approx(windows[1][0].total_energy_j)
    assert [n for _, n in windows] == [1, 3, 1]
    for n, result in zip((1, 2, 3, 4), results, strict=True):  # each got its own rows back
        np.testing.assert_array_equal(result.outputs, _items(n, 2.0 * n))


def test_a_failing_call_fails_its_requests_only():
    worker, model, _ = _worker(max_batch_items=8)
    worker.start()
    first = worker.submit(_items(1))
    assert model.entered.wait(5)
    bad, good_in_same_window = worker.submit(_items(1, -1.0)), worker.submit(_items(1))
    model.gate.set()
    first.result(5)
    for future in (bad, good_in_same_window):  # one window: its requests fail together
        with pytest.raises(ModelCallError, match="negative input"):
            future.result(5)
    after = worker.submit(_items(2)).result(5)
    worker.stop()
    assert after.energy.energy_j == 6.0


def test_an_output_of_the_wrong_length_is_a_model_error():
    monitor = EnergyMonitor([JoulesPerCall(1.0)])
    worker = InferenceWorker(lambda x: x[:1], monitor)
    worker.start()
    with pytest.raises(ModelCallError, match=r"returned \(1, 3\) for 2 inputs"):
        worker.submit(_items(2)).result(5)
    worker.stop()


def test_a_full_queue_answers_busy_and_stop_finishes_what_waits():
    worker, model, _ = _worker(max_queue=2)
    worker.start()
    running = worker.submit(_items(1))
    assert model.entered.wait(5)
    queued = [worker.submit(_items(1)), worker.submit(_items(1))]
    with pytest.raises(ServerBusyError, match="retry later"):
        worker.submit(_items(1))
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    model.gate.set()
    stopper.join(5)
    assert all(f.result(0).energy.energy_j == 6.0 for f in [running, *queued])
    assert not worker.alive
    with pytest.raises(ServerBusyError, match="not running"):
        worker.submit(_items(1))


def test_a_cancelled_request_is_not_run():
    worker, model, _ = _worker()
    worker.start()
    first = worker.submit(_items(1))
    assert model.entered.wait(5)
    cancelled = worker.submit(_items(5))
    assert cancelled.cancel()
    model.gate.set()
    first.result(5)
    worker.stop()
    assert model.calls == [1]


def test_warm_up_runs_unmetered_and_its_failure_is_raised():
    meter = JoulesPerCall(6.0)
    calls = []
    worker = InferenceWorker(lambda x: calls.append(len(x)) or x, EnergyMonitor([meter]))
    worker.start(warmup=_items(1))
    assert calls == [1] and worker.windows_run == 0
    worker.stop()

    def broken(x):
        raise OSError("weights missing")

    with pytest.raises(OSError, match="weights missing"):
        InferenceWorker(broken, EnergyMonitor([meter])).start(warmup=_items(1))

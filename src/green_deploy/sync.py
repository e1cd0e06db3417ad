"""Device synchronisation hooks for ``EnergyMonitor(synchronize=...)``.

GPU work is queued asynchronously: without a synchronisation at each window edge a window would
close while its kernels still run, and their energy would land in the next window. These hooks
live outside ``green_deploy.energy`` so the energy core imports no framework.
"""

from __future__ import annotations

from collections.abc import Callable


def _nothing() -> None:
    """CPU work is synchronous: nothing to wait for."""


def torch_synchronize(device: str | int | None = None) -> Callable[[], None]:
    """``torch.cuda.synchronize`` for ``device`` when CUDA is in use, else a no-op."""
    import torch

    if not torch.cuda.is_available():
        return _nothing
    return lambda: torch.cuda.synchronize(device)


def tensorflow_synchronize() -> Callable[[], None]:
    """Waits for every TensorFlow device (``tf.test.experimental.sync_devices``)."""
    import tensorflow as tf

    return tf.test.experimental.sync_devices


def no_synchronize() -> Callable[[], None]:
    """For runtimes that return only when the work is done (ONNX Runtime and TFLite on CPU)."""
    return _nothing

"""Batched inference in either framework, returning numpy, for evaluation and parity checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from green_deploy.zoo.families.base import to_keras_layout


def predict_torch(model: Any, inputs: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Outputs as float32 numpy; on ``device`` the model must already be there (inputs are moved,
    and copying the outputs back waits for the device to finish)."""
    import torch

    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.as_tensor(inputs[start : start + batch_size]).to(device)
            outputs.append(model(batch).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


def predict_keras(model: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Calls the model per batch (``model.predict`` adds a dataset pipeline and callbacks we do not need)."""
    keras_inputs = to_keras_layout(inputs)
    if keras_inputs.dtype == np.int64:
        keras_inputs = keras_inputs.astype(np.int32)
    outputs = [
        np.asarray(model(keras_inputs[start : start + batch_size], training=False))
        for start in range(0, len(keras_inputs), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)

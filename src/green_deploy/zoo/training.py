"""Training zoo models in PyTorch (their Keras twins receive the trained weights).

Pretrained backbones are frozen and their features computed once (``mode: head``): on two CPU
cores that makes an ImageNet or MiniLM backbone usable in seconds instead of hours.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from green_deploy.zoo.inference import predict_torch
from green_deploy.zoo.spec import TrainingSettings

logger = logging.getLogger(__name__)

Objective = Literal["classification", "language_modeling"]


@dataclass(frozen=True)
class TrainingReport:
    """What training did; ``duration_s`` includes feature extraction for ``head`` mode."""

    mode: str
    duration_s: float
    steps: int
    examples_seen: int
    final_loss: float
    trained_parameters: int


# What a model used as it is (``mode: none``) reports
UNTRAINED = TrainingReport("none", 0.0, 0, 0, math.nan, 0)


def train(
    model: Any,
    inputs: np.ndarray,
    targets: np.ndarray | None,
    settings: TrainingSettings,
    objective: Objective,
) -> TrainingReport:
    """Train ``model`` in place as ``settings.mode`` says and report what it cost; ``targets`` is
    None only for tasks without labels, which train nothing (``mode: none``)."""
    import torch

    torch.manual_seed(settings.seed)
    start_s = time.perf_counter()
    if settings.mode == "none":
        return UNTRAINED
    assert targets is not None  # only label-free tasks (retrieval) lack targets, and they train nothing
    if settings.mode == "head":
        features = predict_torch(model.backbone, inputs)
        model.backbone.eval()
        steps, seen, loss = _fit(model.head, features, targets, settings, objective)
        trained = model.head
    else:
        steps, seen, loss = _fit(model, inputs, targets, settings, objective)
        trained = model
    model.eval()
    return TrainingReport(
        mode=settings.mode,
        duration_s=time.perf_counter() - start_s,
        steps=steps,
        examples_seen=seen,
        final_loss=loss,
        trained_parameters=sum(p.numel() for p in trained.parameters() if p.requires_grad),
    )


def _fit(
    module: Any, inputs: np.ndarray, targets: np.ndarray, settings: TrainingSettings, objective: Objective
) -> tuple[int, int, float]:
    import torch
    from torch.nn import functional as F

    n = len(inputs)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate, total_steps=max(total_steps, 1)
    )
    rng = np.random.default_rng(settings.seed)
    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(targets)
    module.train()
    step, seen, running_loss = 0, 0, math.nan
    log_every = max(total_steps // 10, 1)
    while step < total_steps:
        for batch in np.array_split(rng.permutation(n), steps_per_epoch):
            if step >= total_steps:
                break
            index = torch.from_numpy(batch)
            outputs = module(x_all[index])
            y = y_all[index]
            if objective == "language_modeling":
                loss = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1))
            else:
                loss = F.cross_entropy(outputs, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            seen += len(batch)
            value = loss.item()
            running_loss = value if math.isnan(running_loss) else 0.9 * running_loss + 0.1 * value
            if step % log_every == 0 or step == total_steps:
                logger.info("step %d/%d loss %.4f", step, total_steps, running_loss)
    module.eval()
    return step, seen, running_loss

"""Magnitude pruning of a Keras model with tensorflow-model-optimization (Zhu & Gupta 2017).

tfmot zeroes the smallest weights only inside training steps (the wrapper applies its masks in
``call(training=True)`` and the ``UpdatePruningStep`` callback at the end of the epoch), so the
technique needs labelled fine-tune data: it prunes to a constant target sparsity from step 0 and
fine-tunes for a few steps, then strips the wrappers to leave a plain Keras model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.zoo.families.base import to_keras_layout
from green_deploy.zoo.settings import parse_settings

logger = logging.getLogger(__name__)

# Tasks whose fine-tune targets are integer class ids, fit by sparse cross-entropy on logits:
# (N,) labels for classification, (N, L) next-byte ids for language modelling.
_SPARSE_CE_TASKS = ("classification", "language_modeling")
_SHUFFLE_SEED = 0


@dataclass(frozen=True)
class TfmotPruningSettings:
    """``sparsity``: fraction of each prunable weight set to zero, 0 < s < 1 (required);
    ``finetune_steps`` optimizer steps of ``batch_size`` examples with Adam at ``learning_rate``."""

    sparsity: float | None = None
    finetune_steps: int = 50
    learning_rate: float = 1e-4
    batch_size: int = 32


def parse_pruning_settings(raw: Mapping[str, Any] | None) -> TfmotPruningSettings:
    where = "technique 'tfmot_pruning'"
    s = parse_settings(TfmotPruningSettings, raw, where)
    if s.sparsity is None:
        raise ConfigError(f"{where}: setting 'sparsity' is required (a fraction, e.g. 0.5)")
    if not 0.0 < s.sparsity < 1.0:
        raise ConfigError(f"{where}: sparsity must be strictly between 0 and 1, got {s.sparsity}")
    if s.finetune_steps < 1:
        raise ConfigError(
            f"{where}: finetune_steps must be at least 1 (tfmot applies masks only in training steps), "
            f"got {s.finetune_steps}"
        )
    if s.learning_rate <= 0:
        raise ConfigError(f"{where}: learning_rate must be positive, got {s.learning_rate}")
    if s.batch_size < 1:
        raise ConfigError(f"{where}: batch_size must be at least 1, got {s.batch_size}")
    return s


def _keras_inputs(x: np.ndarray) -> np.ndarray:
    """PyTorch-layout inputs as the Keras model takes them (NHWC; int32 ids)."""
    keras_x = to_keras_layout(np.asarray(x))
    return keras_x.astype(np.int32) if np.issubdtype(keras_x.dtype, np.integer) else keras_x


def _sparsity(weights: list[Any]) -> tuple[float, int]:
    """Fraction of exactly-zero values over ``weights``, and their total size."""
    total = sum(int(np.prod(w.shape)) for w in weights)
    zeros = sum(int(np.count_nonzero(np.asarray(w) == 0)) for w in weights)
    return (zeros / total if total else 0.0), total


class TfmotMagnitudePruning:
    """tfmot ``prune_low_magnitude`` over the whole model, fine-tuned briefly, then stripped."""

    name = "tfmot_pruning"
    framework = "tensorflow"

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        s = parse_pruning_settings(settings)
        if context.task not in _SPARSE_CE_TASKS:
            raise NotApplicable(
                f"task {context.task!r} has no labels to fine-tune on, and tfmot applies its pruning "
                "masks only during training steps"
            )
        if context.finetune_x is None or context.finetune_y is None or len(context.finetune_x) == 0:
            raise NotApplicable(
                "no fine-tune data: tfmot applies its pruning masks only during training steps"
            )

        import tensorflow as tf
        import tensorflow_model_optimization as tfmot
        import tf_keras
        from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
            PruneLowMagnitude,
        )

        # A clone with copied weights: compiling and fitting never touch the baseline.
        clone = tf_keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        schedule = tfmot.sparsity.keras.ConstantSparsity(s.sparsity, begin_step=0, frequency=1)
        try:
            pruned = tfmot.sparsity.keras.prune_low_magnitude(clone, pruning_schedule=schedule)
        except ValueError as error:  # a layer outside tfmot's registry that is not a PrunableLayer
            raise NotApplicable(f"tfmot cannot wrap this model for pruning: {error}") from error
        pruned_ids = {
            id(weight)
            for layer in pruned.layers
            if isinstance(layer, PruneLowMagnitude)
            for weight, _mask, _threshold in layer.pruning_vars
        }

        x = _keras_inputs(context.finetune_x)
        y = np.asarray(context.finetune_y).astype(np.int32)
        if len(y) != len(x):
            raise ValueError(f"finetune_x has {len(x)} examples but finetune_y has {len(y)}")
        dataset = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=_SHUFFLE_SEED, reshuffle_each_iteration=True)
            .repeat()
            .batch(s.batch_size)
        )
        pruned.compile(
            optimizer=tf_keras.optimizers.Adam(learning_rate=s.learning_rate),
            loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        # One epoch of finetune_steps: UpdatePruningStep masks the weights again at epoch end,
        # after the last optimizer step, so the stripped weights are exactly sparse.
        history = pruned.fit(
            dataset,
            epochs=1,
            steps_per_epoch=s.finetune_steps,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
            verbose=0,
        )
        stripped = tfmot.sparsity.keras.strip_pruning(pruned)

        # strip_pruning hands back the wrapped layers themselves, so the pruned variables are
        # found in the stripped model by identity.
        prunable = [weight for weight in stripped.weights if id(weight) in pruned_ids]
        achieved, n_prunable = _sparsity([weight.numpy() for weight in prunable])
        final_loss = float(history.history["loss"][-1])
        logger.info(
            "%s: tfmot pruning to %.2f reached %.4f over %d prunable weights (loss %.4f after %d steps)",
            context.model_id,
            s.sparsity,
            achieved,
            n_prunable,
            final_loss,
            s.finetune_steps,
        )
        return OptimizedModel(
            framework="tensorflow",
            runtime="keras",
            model=stripped,
            devices=("cpu", "gpu"),
            notes=(
                "tfmot.sparsity.keras.prune_low_magnitude over the whole model with "
                f"ConstantSparsity({s.sparsity}, begin_step=0, frequency=1); {s.finetune_steps} "
                f"fine-tune steps (Adam lr={s.learning_rate}, batch {s.batch_size}, sparse CE on "
                "logits) with UpdatePruningStep; strip_pruning. Dense and sparse kernels run the "
                "same dense ops: the gain is in compressed size, not speed."
            ),
            extra={
                "target_sparsity": s.sparsity,
                "achieved_sparsity": achieved,
                "prunable_parameters": n_prunable,
                "finetune_steps": s.finetune_steps,
                "final_loss": final_loss,
            },
        )


TECHNIQUE = TfmotMagnitudePruning()

"""Magnitude pruning of a Keras model with tensorflow-model-optimization (Zhu & Gupta 2017), either
unstructured (a target fraction of each kernel) or m:n structured (e.g. 2:4: at least 2 zeros in
every 4 consecutive weights along the input channels, the pattern sparse tensor cores accelerate).

tfmot zeroes the smallest weights only inside training steps (the wrapper applies its masks in
``call(training=True)`` and the ``UpdatePruningStep`` callback at the end of the epoch), so the
technique needs labelled fine-tune data: it prunes to a constant target sparsity from step 0 (or
chooses the m:n masks once, at the first step) and fine-tunes for a few steps with
BatchNormalization frozen, then strips the wrappers to leave a plain Keras model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.keras_finetune import (
    check_finetune_settings,
    finetune_keras,
    freeze_batch_norm,
    require_labelled_finetune,
)

logger = logging.getLogger(__name__)

_NEEDS_TRAINING = "tfmot applies its pruning masks only during training steps"


@dataclass(frozen=True)
class TfmotPruningSettings:
    """Exactly one of ``sparsity`` (fraction of each prunable weight set to zero, 0 < s < 1) and
    ``sparsity_m_by_n`` ([m, n], 0 < m < n: at least m zeros in every n consecutive weights along
    the input channels, which fixes the sparsity at m/n); ``finetune_steps`` optimizer steps of
    ``batch_size`` examples with Adam at ``learning_rate``."""

    sparsity: float | None = None
    sparsity_m_by_n: tuple[int, ...] | None = None
    finetune_steps: int = 50
    learning_rate: float = 1e-4
    batch_size: int = 32


def parse_pruning_settings(raw: Mapping[str, Any] | None) -> TfmotPruningSettings:
    where = "technique 'tfmot_pruning'"
    s = parse_settings(TfmotPruningSettings, raw, where)
    if s.sparsity is not None and s.sparsity_m_by_n is not None:
        raise ConfigError(
            f"{where}: give either 'sparsity' (unstructured) or 'sparsity_m_by_n' (m:n structured, "
            f"whose sparsity is m/n), not both; got sparsity {s.sparsity} and sparsity_m_by_n "
            f"{list(s.sparsity_m_by_n)}"
        )
    if s.sparsity is None and s.sparsity_m_by_n is None:
        raise ConfigError(
            f"{where}: setting 'sparsity' is required (a fraction, e.g. 0.5), "
            "or 'sparsity_m_by_n' for m:n structured pruning (e.g. [2, 4])"
        )
    if s.sparsity_m_by_n is not None:
        if len(s.sparsity_m_by_n) != 2 or not 0 < s.sparsity_m_by_n[0] < s.sparsity_m_by_n[1]:
            raise ConfigError(
                f"{where}: sparsity_m_by_n must be [m, n] with 0 < m < n (m zeros in every n "
                f"consecutive weights, e.g. [2, 4]), got {list(s.sparsity_m_by_n)}"
            )
    elif not 0.0 < s.sparsity < 1.0:  # type: ignore[operator]
        raise ConfigError(f"{where}: sparsity must be strictly between 0 and 1, got {s.sparsity}")
    check_finetune_settings(where, s.finetune_steps, s.learning_rate, s.batch_size)
    return s


def _sparsity(weights: list[Any]) -> tuple[float, int]:
    """Fraction of exactly-zero values over ``weights``, and their total size."""
    total = sum(int(np.prod(w.shape)) for w in weights)
    zeros = sum(int(np.count_nonzero(np.asarray(w) == 0)) for w in weights)
    return (zeros / total if total else 0.0), total


def m_by_n_groups(kernel: np.ndarray, m: int, n: int) -> tuple[int, int]:
    """(groups with at least ``m`` zeros, all groups) over the groups of ``n`` consecutive weights
    along the input-channel axis of a kernel stored input-channels-second-to-last: Dense
    (in, out), Conv2D (h, w, in, out), LSTM (in, 4 * units). The input channels must divide by n."""
    channels_in = kernel.shape[-2]
    if channels_in % n:
        raise ValueError(
            f"a kernel of shape {kernel.shape} has {channels_in} input channels, not a multiple of {n}"
        )
    groups = np.moveaxis(np.asarray(kernel), -2, -1).reshape(-1, channels_in // n, n)
    zeros = np.count_nonzero(groups == 0, axis=-1)
    return int(np.count_nonzero(zeros >= m)), int(zeros.size)


def _m_by_n_kernels(layer: Any) -> list[Any] | None:
    """The kernels tfmot would prune in ``layer`` when it is a Dense, Conv2D or LSTM (exact types:
    their kernels keep the input channels second to last, as tfmot's m:n masks assume); None
    for any other layer."""
    import tf_keras

    kind = type(layer)
    if kind in (tf_keras.layers.Dense, tf_keras.layers.Conv2D):
        return [layer.kernel]
    if kind is tf_keras.layers.LSTM:
        return [layer.cell.kernel, layer.cell.recurrent_kernel]
    return None


def _select_m_by_n_layers(model: Any, n: int) -> tuple[set[str], dict[str, str], int]:
    """Names of the layers to prune m:n, the layers with weight matrices left dense (name to
    reason; norms and biases are never pruned, so not listed), and the number of parameters the
    selected kernels hold."""
    selected: set[str] = set()
    skipped: dict[str, str] = {}
    covered = 0
    for layer in model.layers:
        if not any(len(weight.shape) >= 2 for weight in layer.weights):
            continue
        kernels = _m_by_n_kernels(layer)
        if kernels is None:
            skipped[layer.name] = f"{type(layer).__name__}: not a Dense, Conv2D or LSTM kernel"
        elif any(int(kernel.shape[-2]) % n for kernel in kernels):
            shapes = [tuple(kernel.shape) for kernel in kernels]
            skipped[layer.name] = f"{type(layer).__name__}: input channels of {shapes} not a multiple of {n}"
        else:
            selected.add(layer.name)
            covered += sum(int(np.prod(kernel.shape)) for kernel in kernels)
    return selected, skipped, covered


def _m_by_n_policy(selected: set[str]) -> Any:
    """A tfmot PruningPolicy that wraps only the ``selected`` layers (by name)."""
    import tensorflow_model_optimization as tfmot

    class _Selected(tfmot.sparsity.keras.PruningPolicy):
        def allow_pruning(self, layer: Any) -> bool:
            return layer.name in selected

        def ensure_model_supports_pruning(self, model: Any) -> None:
            """The selection was made on this model; nothing more to check."""

    return _Selected()


class TfmotMagnitudePruning:
    """tfmot ``prune_low_magnitude`` (over the whole model, or m:n over the layers whose kernels
    allow it), fine-tuned briefly, then stripped."""

    name = "tfmot_pruning"
    framework = "tensorflow"

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        s = parse_pruning_settings(settings)
        require_labelled_finetune(context, _NEEDS_TRAINING)

        import tensorflow_model_optimization as tfmot
        import tf_keras
        from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
            PruneLowMagnitude,
        )

        # A clone with copied weights: compiling and fitting never touch the baseline.
        clone = tf_keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        frozen = freeze_batch_norm(clone)
        prune_kwargs: dict[str, Any]
        if s.sparsity_m_by_n is not None:
            m, n = s.sparsity_m_by_n
            selected, skipped, covered = _select_m_by_n_layers(clone, n)
            if not selected:
                raise NotApplicable(
                    f"no layer can be pruned {m}:{n}: tfmot's m:n masks need Dense, Conv2D or LSTM "
                    f"kernels with input channels a multiple of {n}; "
                    f"{'; '.join(f'{k} ({v})' for k, v in list(skipped.items())[:3])}"
                )
            # tfmot's default schedule stays: m:n masks ignore it and are chosen once, in the first
            # training step, from the magnitudes the weights have before any update.
            prune_kwargs = {
                "sparsity_m_by_n": (m, n),
                "pruning_policy": _m_by_n_policy(selected),
            }
        else:
            prune_kwargs = {
                "pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(
                    s.sparsity, begin_step=0, frequency=1
                )
            }
        try:
            pruned = tfmot.sparsity.keras.prune_low_magnitude(clone, **prune_kwargs)
        except ValueError as error:  # a layer outside tfmot's registry that is not a PrunableLayer
            raise NotApplicable(f"tfmot cannot wrap this model for pruning: {error}") from error
        pruned_ids = {
            id(weight)
            for layer in pruned.layers
            if isinstance(layer, PruneLowMagnitude)
            for weight, _mask, _threshold in layer.pruning_vars
        }

        # UpdatePruningStep masks the weights again at the end of the single epoch, after the
        # last optimizer step, so the stripped weights are exactly sparse.
        final_loss = finetune_keras(
            pruned,
            context,
            s.finetune_steps,
            s.learning_rate,
            s.batch_size,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        )
        stripped = tfmot.sparsity.keras.strip_pruning(pruned)
        # Back to the baseline's flags (and so its order of get_weights: trainable ones first).
        baseline_trainable = {layer.name: layer.trainable for layer in model.layers}
        for layer in stripped.layers:
            if isinstance(layer, tf_keras.layers.BatchNormalization):
                layer.trainable = baseline_trainable.get(layer.name, True)

        # strip_pruning hands back the wrapped layers themselves, so the pruned variables are
        # found in the stripped model by identity.
        prunable = [weight.numpy() for weight in stripped.weights if id(weight) in pruned_ids]
        achieved, n_prunable = _sparsity(prunable)
        extra: dict[str, Any] = {
            "target_sparsity": s.sparsity,
            "achieved_sparsity": achieved,
            "prunable_parameters": n_prunable,
            "finetune_steps": s.finetune_steps,
            "final_loss": final_loss,
            "frozen_batch_norms": frozen,
        }
        if s.sparsity_m_by_n is None:
            label = f"{s.sparsity:.2f}"
            pattern = f"ConstantSparsity({s.sparsity}, begin_step=0, frequency=1) over the whole model"
            speed = (
                "Dense and sparse kernels run the same dense ops: the gain is in compressed size, not speed."
            )
        else:
            label = f"{m}:{n}"
            extra.update(self._check_m_by_n(prunable, s.sparsity_m_by_n, context.model_id))
            extra.update(
                target_sparsity=m / n,
                m_by_n_layers=sorted(selected),
                m_by_n_skipped_layers=skipped,
                m_by_n_model_fraction=covered / max(1, stripped.count_params()),
            )
            pattern = (
                f"sparsity_m_by_n=({m}, {n}) on {len(selected)} Dense/Conv2D/LSTM layer(s) whose input "
                f"channels divide by {n} ({extra['m_by_n_model_fraction']:.1%} of the parameters; "
                f"{len(skipped)} layer(s) with weight matrices left dense), masks chosen from the "
                "baseline's magnitudes"
            )
            speed = (
                f"TF and TFLite run {m}:{n}-sparse kernels as dense ops on CPU; the sparse tensor cores "
                "(or XNNPACK sparse kernels) that could exploit the pattern are not used on this path: "
                "the gain measured here is in compressed size, not speed."
            )
        logger.info(
            "%s: tfmot pruning (%s) reached %.4f over %d prunable weights (loss %.4f after %d steps)",
            context.model_id,
            label,
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
                f"tfmot.sparsity.keras.prune_low_magnitude with {pattern}; {s.finetune_steps} fine-tune "
                f"steps (Adam lr={s.learning_rate}, batch {s.batch_size}, sparse CE on logits, {frozen} "
                f"BatchNormalization layers frozen) with UpdatePruningStep; strip_pruning. {speed}"
            ),
            extra=extra,
        )

    @staticmethod
    def _check_m_by_n(kernels: list[np.ndarray], m_by_n: tuple[int, ...], model_id: str) -> dict[str, Any]:
        """The achieved pattern: the fraction of n-groups holding at least m zeros, which must be 1."""
        m, n = m_by_n
        conforming = total = 0
        for kernel in kernels:
            ok, groups = m_by_n_groups(kernel, m, n)
            conforming += ok
            total += groups
        fraction = conforming / total if total else 0.0
        if conforming != total:
            raise NotApplicable(
                f"tfmot's {m}:{n} masks did not hold after the fine-tune: {total - conforming} of "
                f"{total} groups of {n} weights have fewer than {m} zeros"
            )
        logger.info("%s: %d of %d groups of %d weights hold %d zeros", model_id, conforming, total, n, m)
        return {"m_by_n": [m, n], "m_by_n_groups": total, "m_by_n_conforming_fraction": fraction}


TECHNIQUE = TfmotMagnitudePruning()

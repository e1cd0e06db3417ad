"""A user's own Keras model (a ``.keras`` file or a SavedModel folder written by Keras), used as it is.

It is loaded with ``tf_keras`` in safe mode (no arbitrary code in lambda layers) and saved into
the build as ``model.keras``, the TensorFlow baseline; TensorFlow techniques (TFLite conversion
and quantization, tfmot pruning and QAT) apply to it, PyTorch ones do not. It reads images
(NHWC float32 in [0, 1], converted from the PyTorch layout as every Keras model here is) or, with
``tokenizer``, texts as token ids. Its outputs are its logits: their width must equal the
dataset's classes. ``training.mode`` is ``none``: the model is measured as the user trained it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from green_deploy.errors import ArtifactError, ModelNotFoundError
from green_deploy.zoo.families.own_inputs import OwnFileFamily

if TYPE_CHECKING:
    import tf_keras

logger = logging.getLogger(__name__)

NAME = "keras"


def load_user_keras(path: Path) -> tf_keras.Model:
    """The Keras model in ``path`` (a ``.keras`` archive or a Keras SavedModel folder)."""
    if not path.exists():
        raise ModelNotFoundError(
            f"Keras model {path.resolve()} does not exist; set architecture.path to a file written by "
            "model.save('model.keras') (tf_keras, TF_USE_LEGACY_KERAS=1) or to a SavedModel folder"
        )
    import tf_keras

    try:
        return tf_keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many unrelated types for a damaged or foreign file
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ArtifactError(
            f"{path} is not a Keras model tf_keras can load ({reason}); save it with tf_keras's model.save"
        ) from error


class KerasFamily(OwnFileFamily):
    """A Keras model used as it is: a TensorFlow baseline with no PyTorch twin, no training."""

    name = NAME
    frameworks = ("tensorflow",)
    describes = "the Keras model"

    def build_keras(self, arch: Mapping[str, Any], n_outputs: int) -> tf_keras.Model:
        s = self.settings(arch)
        model = load_user_keras(Path(s.path).expanduser())
        logger.info("%s: a Keras model of %d parameters, %d classes", s.path, model.count_params(), n_outputs)
        return model


FAMILY = KerasFamily()

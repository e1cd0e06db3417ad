"""Keras twins of ``torch_layers`` and the weight ports between them.

Keras layer names mirror the PyTorch module paths, so a port is a lookup by name, not
positional guesswork. Imported only inside family methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tf_keras

from green_deploy.zoo.families.torch_models import LAYER_NORM_EPS

layers = tf_keras.layers


def transformer_block(x: Any, dim: int, heads: int, mlp_dim: int, causal: bool, name: str) -> Any:
    """The Keras twin of ``torch_layers.TransformerBlock`` applied to ``x``."""
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name=f"{name}.norm1")(x)
    h = layers.MultiHeadAttention(heads, dim // heads, name=f"{name}.attention")(h, h, use_causal_mask=causal)
    x = layers.Add(name=f"{name}.residual1")([x, h])
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name=f"{name}.norm2")(x)
    h = layers.Dense(mlp_dim, activation="gelu", name=f"{name}.mlp.0")(h)
    h = layers.Dense(dim, name=f"{name}.mlp.2")(h)
    return layers.Add(name=f"{name}.residual2")([x, h])


def to_numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def port_dense(linear: Any, dense: Any) -> None:
    """nn.Linear (out, in) to Dense (in, out)."""
    dense.set_weights([to_numpy(linear.weight).T, to_numpy(linear.bias)])


def port_layer_norm(norm: Any, keras_norm: Any) -> None:
    keras_norm.set_weights([to_numpy(norm.weight), to_numpy(norm.bias)])


def port_batch_norm(norm: Any, keras_norm: Any) -> None:
    keras_norm.set_weights(
        [to_numpy(norm.weight), to_numpy(norm.bias), to_numpy(norm.running_mean), to_numpy(norm.running_var)]
    )


def port_conv2d(conv: Any, keras_conv: Any) -> None:
    """Conv2d OIHW to Conv2D HWIO (bias when present)."""
    weights = [to_numpy(conv.weight).transpose(2, 3, 1, 0)]
    if conv.bias is not None:
        weights.append(to_numpy(conv.bias))
    keras_conv.set_weights(weights)


def port_attention(attention: Any, mha: Any) -> None:
    """Linear (out, in) to MHA kernels (in, heads, head_dim) and output (heads, head_dim, out)."""
    dim = attention.query.weight.shape[0]
    heads = attention.heads
    head_dim = dim // heads
    for projection in ("query", "key", "value"):
        linear = getattr(attention, projection)
        dense = getattr(mha, f"_{projection}_dense")
        dense.kernel.assign(to_numpy(linear.weight).T.reshape(dim, heads, head_dim))
        dense.bias.assign(to_numpy(linear.bias).reshape(heads, head_dim))
    mha._output_dense.kernel.assign(to_numpy(attention.output.weight).T.reshape(heads, head_dim, dim))
    mha._output_dense.bias.assign(to_numpy(attention.output.bias))


def port_transformer_block(block: Any, keras_model: Any, name: str) -> None:
    port_layer_norm(block.norm1, keras_model.get_layer(f"{name}.norm1"))
    port_attention(block.attention, keras_model.get_layer(f"{name}.attention"))
    port_layer_norm(block.norm2, keras_model.get_layer(f"{name}.norm2"))
    port_dense(block.mlp[0], keras_model.get_layer(f"{name}.mlp.0"))
    port_dense(block.mlp[2], keras_model.get_layer(f"{name}.mlp.2"))


class StateDictPort:
    """A PyTorch state dict handed out key by key to a Keras port, which must use every weight:
    a port that misses a weight or asks for one that is not there fails instead of leaving the
    twin half-initialised."""

    def __init__(self, torch_model: Any, skip_suffixes: tuple[str, ...] = ()):
        self._state = {
            key: to_numpy(value)
            for key, value in torch_model.state_dict().items()
            if not key.endswith(skip_suffixes)
        }
        self._used: set[str] = set()

    def take(self, key: str) -> np.ndarray:
        if key not in self._state:
            raise ValueError(f"the PyTorch model has no {key!r} for the Keras twin; wrong pairing?")
        self._used.add(key)
        return self._state[key]

    def finish(self, keras_model: Any) -> int:
        """Check every weight was used; the number of tensors ported."""
        left = sorted(set(self._state) - self._used)
        if left:
            raise ValueError(
                f"PyTorch weights with no Keras counterpart in {keras_model.name}: {left[:5]} ({len(left)} in all)"
            )
        return len(self._used)

"""The layer micro-benchmarks the learned predictor is trained on: which layers, how each is built,
and the training samples from measured windows (``bench/estimate_gpu.py`` measures them on the
device; ``bench/results/estimate_layers*.json`` holds the H100's).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from green_deploy.estimate.counts import GLUE_KINDS
from green_deploy.estimate.predictor import FREE, GROUPS, LayerPredictor, LayerSample

logger = logging.getLogger(__name__)

BITS = {"float32": 32, "float16": 16, "bfloat16": 16}

# name: (kind, hyperparameters); inputs are per example (a batch dimension is added)
LAYERS: dict[str, tuple[str, dict[str, int | str]]] = {
    **{
        f"linear_{i}x{o}_t{t}": ("Linear", {"in_features": i, "out_features": o, "tokens": t})
        for i, o in ((64, 64), (256, 256), (768, 768), (768, 3072), (3072, 768), (1024, 4096), (4096, 4096))
        for t in (1, 128)
    },
    **{
        f"conv_{ci}x{co}_k{k}s{s}_{hw}": (
            "Conv2d",
            {"in_channels": ci, "out_channels": co, "kernel_size": k, "stride": s, "size": hw},
        )
        for ci, co, k, s, hw in (
            (3, 64, 7, 2, 224),
            (64, 64, 3, 1, 56),
            (128, 128, 3, 1, 28),
            (256, 256, 3, 1, 14),
            (512, 512, 3, 1, 7),
            (64, 256, 1, 1, 56),
            (256, 64, 1, 1, 56),
            (1, 32, 3, 1, 28),
            (32, 64, 3, 2, 28),
        )
    },
    **{
        f"attention_{d}h{h}_t{t}": ("MultiheadAttention", {"embed_dim": d, "num_heads": h, "tokens": t})
        for d, h, t in ((64, 4, 49), (256, 4, 128), (768, 12, 128), (768, 12, 512))
    },
    **{
        f"embedding_{v}x{d}_t{t}": ("Embedding", {"num_embeddings": v, "embedding_dim": d, "tokens": t})
        for v, d, t in ((30522, 768, 128), (256, 64, 64), (5000, 128, 32))
    },
    **{
        f"lstm_{i}x{h}_t{t}": ("LSTM", {"input_size": i, "hidden_size": h, "tokens": t})
        for i, h, t in ((64, 128, 64), (128, 256, 32))
    },
    **{
        f"{kind.lower()}_{shape}": (kind, {"shape": shape})
        for kind in ("ReLU", "GELU")
        for shape in ("64x56x56", "128x3072")
    },
    **{
        f"sdpa_h{h}_t{t}_d{d}": ("ScaledDotProductAttention", {"heads": h, "tokens": t, "head_dim": d})
        for h, t, d in ((4, 49, 16), (4, 128, 64), (12, 128, 64), (12, 197, 64), (12, 512, 64))
    },
    **{
        f"glue_{op}_{shape}": (kind, {"op": op, "shape": shape})
        for kind, op, shape in (
            ("Pointwise", "add", "128x768"),
            ("Pointwise", "add", "256x56x56"),
            ("Pointwise", "mul", "3072x128"),
            ("Copy", "cat", "12x128x64"),
            ("Copy", "contiguous", "128x768"),
            ("Reduction", "mean", "197x768"),
            ("Factory", "arange", "128"),
        )
    },
    "layernorm_128x768": ("LayerNorm", {"shape": "128x768"}),
    "batchnorm_64x56x56": ("BatchNorm2d", {"shape": "64x56x56"}),
    "maxpool_64x112x112": ("MaxPool2d", {"shape": "64x112x112"}),
    "avgpool_512x7x7": ("AdaptiveAvgPool2d", {"shape": "512x7x7"}),
}


def build_layer(kind: str, hyper: dict[str, Any]) -> tuple[Any, Callable[[int], Any]]:
    """The module and a function of the batch size giving its input (float32, on the CPU)."""
    import torch
    from torch import nn

    def shaped(text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in str(text).split("x"))

    if kind == "Linear":
        module: nn.Module = nn.Linear(hyper["in_features"], hyper["out_features"])
        return module, lambda b: torch.randn(b, hyper["tokens"], hyper["in_features"])
    if kind == "Conv2d":
        module = nn.Conv2d(
            hyper["in_channels"],
            hyper["out_channels"],
            hyper["kernel_size"],
            hyper["stride"],
            padding=hyper["kernel_size"] // 2,
        )
        return module, lambda b: torch.randn(b, hyper["in_channels"], hyper["size"], hyper["size"])
    if kind == "MultiheadAttention":

        class SelfAttention(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.attention = nn.MultiheadAttention(
                    hyper["embed_dim"], hyper["num_heads"], batch_first=True
                )

            def forward(self, x: Any) -> Any:
                return self.attention(x, x, x, need_weights=False)[0]

        return SelfAttention(), lambda b: torch.randn(b, hyper["tokens"], hyper["embed_dim"])
    if kind == "ScaledDotProductAttention":  # one tensor as queries, keys and values: self-attention's shapes
        scores = _in_container(lambda x: nn.functional.scaled_dot_product_attention(x, x, x))
        return scores, lambda b: torch.randn(b, hyper["heads"], hyper["tokens"], hyper["head_dim"])
    if kind == "Embedding":
        module = nn.Embedding(hyper["num_embeddings"], hyper["embedding_dim"])
        return module, lambda b: torch.randint(0, hyper["num_embeddings"], (b, hyper["tokens"]))
    if kind == "LSTM":

        class Recurrent(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(hyper["input_size"], hyper["hidden_size"], batch_first=True)

            def forward(self, x: Any) -> Any:
                return self.lstm(x)[0]

        return Recurrent(), lambda b: torch.randn(b, hyper["tokens"], hyper["input_size"])
    shape = shaped(hyper["shape"])
    if kind in GLUE_KINDS:
        return _in_container(lambda x: _glue(hyper["op"], x)), lambda b: torch.randn(b, *shape)
    factories: dict[str, Callable[[], nn.Module]] = {
        "ReLU": nn.ReLU,
        "GELU": nn.GELU,
        "LayerNorm": lambda: nn.LayerNorm(shape[-1]),
        "BatchNorm2d": lambda: nn.BatchNorm2d(shape[0]),
        "MaxPool2d": lambda: nn.MaxPool2d(2),
        "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(1),
    }
    module = factories[kind]()
    return module, lambda b: torch.randn(b, *shape)


def _glue(op: str, x: Any) -> Any:
    import torch

    return {
        "add": lambda: x + x,  # a residual addition
        "mul": lambda: x * 0.5,
        "cat": lambda: torch.cat((x, x), dim=-1),  # a key/value cache growing
        "contiguous": lambda: x.transpose(-1, -2).contiguous(),  # heads split or merged
        "mean": lambda: x.mean(dim=-1),
        "arange": lambda: torch.arange(x.shape[-1], device=x.device),  # position indices
    }[op]()


def _in_container(op: Callable[[Any], Any]) -> Any:
    """A module whose own ``forward`` runs ``op``, as a model's containers run products and glue
    between layers (its output passes an Identity child, so the counter sees a container)."""
    from torch import nn

    class Container(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.output = nn.Identity()

        def forward(self, x: Any) -> Any:
            return self.output(op(x))

    return Container()


def layer_samples(rows: Iterable[Mapping[str, Any]]) -> list[LayerSample]:
    """Measured windows (``layer``, ``kind``, ``hyper``, ``dtype``, ``batch``, ``energy_per_example_j``)
    as training samples: each layer counted by ``counts.count_torch`` exactly as a model's are."""
    from green_deploy.estimate.counts import count_torch

    samples = []
    for row in rows:
        module, make_input = build_layer(row["kind"], row["hyper"])
        counted = [
            layer
            for layer in count_torch(module, make_input(1), cross_check=False).layers
            if layer.kind not in FREE
        ]
        if len(counted) != 1 or counted[0].kind not in GROUPS:
            logger.warning("%s: counted as %s; left out", row["layer"], [layer.kind for layer in counted])
            continue
        samples.append(LayerSample(counted[0], BITS[row["dtype"]], row["batch"], row["energy_per_example_j"]))
    return samples


def load_predictor(paths: Iterable[Path | str], mode: str = "sync") -> tuple[LayerPredictor, dict[str, Any]]:
    """The predictor trained on the windows stored in ``paths`` (JSON written by
    ``bench/estimate_gpu.py``) measured in ``mode`` (``sync``: the device waited for after every
    call, the default; ``queued``), and the measuring device's description."""
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for path in paths:
        stored = json.loads(Path(path).read_text())
        rows += [row for row in stored["rows"] if row.get("mode", "sync") == mode]
        meta = meta or stored["meta"]
    return LayerPredictor.fit(layer_samples(rows)), meta

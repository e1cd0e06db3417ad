"""torch-pruning extensions the structured pruning technique needs; imported only inside it.

torch-pruning 1.6.1's LSTM pruner slices the wrong weight axes, and its magnitude importance
skips LSTM hidden units; these two classes cover both.
"""

from __future__ import annotations

from typing import Any

import torch
import torch_pruning as tp
from torch import nn


class LSTMHiddenPruner(tp.pruner.function.BasePruningFunc):
    """Removes LSTM hidden units (single layer, one direction): the unit's row in each of the
    four gates of both weight matrices and biases, and its column of ``weight_hh_l0``."""

    TARGET_MODULES = nn.LSTM

    def check(self, layer: nn.LSTM, idxs: Any, to_output: bool) -> None:
        if layer.num_layers != 1 or layer.bidirectional or layer.proj_size:
            raise ValueError("only single-layer, one-direction LSTMs without projection can be pruned")
        super().check(layer, idxs, to_output)

    def prune_out_channels(self, layer: nn.LSTM, idxs: Any) -> nn.LSTM:
        hidden = layer.hidden_size
        keep = torch.tensor(sorted(set(range(hidden)) - {int(i) for i in idxs}), dtype=torch.long)
        gates = torch.cat([keep + gate * hidden for gate in range(4)])
        with torch.no_grad():
            layer.weight_ih_l0 = nn.Parameter(layer.weight_ih_l0[gates].clone())  # type: ignore[index]  # nn.LSTM stubs lack its per-layer weights
            layer.weight_hh_l0 = nn.Parameter(layer.weight_hh_l0[gates][:, keep].clone())  # type: ignore[index]  # nn.LSTM stubs lack its per-layer weights
            if layer.bias:
                layer.bias_ih_l0 = nn.Parameter(layer.bias_ih_l0[gates].clone())  # type: ignore[index]  # nn.LSTM stubs lack its per-layer weights
                layer.bias_hh_l0 = nn.Parameter(layer.bias_hh_l0[gates].clone())  # type: ignore[index]  # nn.LSTM stubs lack its per-layer weights
        layer.hidden_size = len(keep)
        return layer

    def prune_in_channels(self, layer: nn.LSTM, idxs: Any) -> nn.LSTM:
        keep = torch.tensor(sorted(set(range(layer.input_size)) - {int(i) for i in idxs}), dtype=torch.long)
        with torch.no_grad():
            layer.weight_ih_l0 = nn.Parameter(layer.weight_ih_l0[:, keep].clone())  # type: ignore[index]  # nn.LSTM stubs lack its per-layer weights
        layer.input_size = len(keep)
        return layer

    def get_out_channels(self, layer: nn.LSTM) -> int:
        return layer.hidden_size

    def get_in_channels(self, layer: nn.LSTM) -> int:
        return layer.input_size


class MagnitudeImportance(tp.importance.MagnitudeImportance):
    """Group magnitude importance (mean over the group's layers, then divided by its mean, as
    torch-pruning's default) that also scores LSTM hidden units, which the stock one skips:
    the p-th power norm of a unit's four gate rows in both weight matrices and of its
    recurrent column."""

    def __init__(self, p: int):
        super().__init__(p=p, group_reduction="mean", normalizer=None)

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor | None:
        scores = super().__call__(group)
        lstm_scores, lstm_idxs = [], []
        for item in group:
            layer, idxs = item.dep.layer, item.idxs
            if isinstance(layer, nn.LSTM) and item.dep.pruning_fn.__name__ == "prune_out_channels":
                hidden = layer.hidden_size

                def rows(weight: torch.Tensor, hidden: int = hidden) -> torch.Tensor:
                    return weight.abs().pow(self.p).reshape(4, hidden, -1).sum(dim=(0, 2))

                unit = rows(layer.weight_ih_l0) + rows(layer.weight_hh_l0)  # type: ignore[arg-type]  # nn.LSTM stubs lack its per-layer weights
                unit = unit + layer.weight_hh_l0.abs().pow(self.p).sum(dim=0)  # type: ignore[operator]  # nn.LSTM stubs lack its per-layer weights
                lstm_scores.append(unit[list(idxs)])
                lstm_idxs.append(item.root_idxs)
        if lstm_scores:
            lstm = self._reduce(lstm_scores, lstm_idxs)
            scores = lstm if scores is None else (scores + lstm) / 2
        return None if scores is None else self._normalize(scores, "mean")

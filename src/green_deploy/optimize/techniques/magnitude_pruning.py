"""Unstructured magnitude pruning in PyTorch (``torch.nn.utils.prune``), local or global.

The smallest-magnitude weights of every Linear, Conv and Embedding weight matrix are zeroed:
per layer (``local``) or ranked across all of them (``global``). The masks are then made
permanent, so the saved artifact holds real zeros (its effective sparsity is measured on it).
Dense kernels still multiply the zeros: this saves storage once compressed, not compute; the
output layer is pruned too unless ``keep_output_layer``. An optional short fine-tune keeps the
zeros (the masks are removed only after it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from green_deploy.config import parse_settings
from green_deploy.errors import ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.finetune import finetune_on_context


@dataclass(frozen=True)
class MagnitudePruningSettings:
    amount: float = 0.5
    scope: str = "global"  # or "local"
    finetune_steps: int = 0
    learning_rate: float = 1e-4
    batch_size: int = 32
    keep_output_layer: bool = True
    keep_first_layer: bool = False  # the input layer (stem conv, embedding) is often the most sensitive


def prunable_weights(
    model: Any, keep_output_layer: bool, keep_first_layer: bool = False
) -> list[tuple[Any, str]]:
    """(module, "weight") pairs of every Linear, Conv and Embedding in ``model``, less the layers kept."""
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding, nn.EmbeddingBag)
    modules = [m for m in model.modules() if isinstance(m, kinds)]
    if keep_output_layer and modules and isinstance(modules[-1], nn.Linear):
        modules = modules[:-1]
    if keep_first_layer:
        modules = modules[1:]
    return [(m, "weight") for m in modules]


class MagnitudePruning:
    name = "magnitude_pruning"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> MagnitudePruningSettings:
        s = parse_settings(MagnitudePruningSettings, raw, f"technique {self.name!r}")
        if not 0.0 < s.amount < 1.0:
            raise ConfigError(f"technique 'magnitude_pruning': amount must be in (0, 1), got {s.amount}")
        if s.scope not in ("global", "local"):
            raise ConfigError(
                f"technique 'magnitude_pruning': scope must be global or local, got {s.scope!r}"
            )
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        from torch.nn.utils import prune

        s = self.settings(settings)
        pruned = copy.deepcopy(model)
        targets = prunable_weights(pruned, s.keep_output_layer, s.keep_first_layer)
        if not targets:
            raise NotApplicable("no Linear, Conv or Embedding weights to prune")
        if s.scope == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=s.amount)
        else:
            for module, name in targets:
                prune.l1_unstructured(module, name, amount=s.amount)
        notes = f"torch.nn.utils.prune L1 {s.scope} unstructured, amount {s.amount}"
        extra: dict[str, Any] = {}
        if s.finetune_steps:
            extra["finetune_loss"] = finetune_on_context(
                pruned, context, s.finetune_steps, s.learning_rate, s.batch_size
            )[-1]
            notes += f", fine-tuned {s.finetune_steps} steps"
        for module, name in targets:
            prune.remove(module, name)  # bake the zeros into the weights
        return OptimizedModel("torch", "pytorch", pruned.eval(), ("cpu", "cuda"), notes=notes, extra=extra)


TECHNIQUE = MagnitudePruning()

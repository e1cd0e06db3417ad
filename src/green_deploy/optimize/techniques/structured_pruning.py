"""Structured pruning with torch-pruning: whole channels, neurons and attention heads are removed,
so the layers shrink and the model really does less work (magnitude pruning only writes zeros).

How (torch-pruning ``MetaPruner``, local ranking):
- A dependency graph traced on two calibration examples couples the layers whose widths must
  change together (a residual stream, a convolution and its batch norm, query/key/value and the
  output projection). Each coupled group loses ``amount`` of its channels, ranked by the group's
  L1 or L2 weight magnitude.
- The output width is the contract: every group that reaches the model's output keeps its width.
  That is the classifier, the LM head, and for embedding models (``n_outputs == 0``) the whole
  residual stream, which *is* the embedding. Found from the graph, not from layer names.
- Attention: whole heads are removed (torch-pruning's ``num_heads`` and ``prune_num_heads``), the
  same heads from query, key, value and the output projection's inputs; each head keeps its width
  and at least one head stays; our ``Attention`` reads its inner width from ``query``, so only its
  ``heads`` count changes. Hugging Face BERT infers heads from tensor shapes already; its
  ``num_attention_heads`` and ``all_head_size`` are updated for consistency.
- LSTM: torch-pruning 1.6.1's own LSTM pruner slices the wrong axes (``weight_hh_l0`` twice on its
  gate axis, ``weight_ih_l0``'s input axis with gate indices) and fails, so a corrected pruner
  removes hidden units from all four gates, and the importance scores LSTM weights too.

Saving: torch-pruning's ``tp.state_dict``/``tp.save`` pickle module objects, which an artifact
must not need. The pruning plan (``extra["rebuild_recipe"]``, stored in the variant's JSON)
instead records the library's own pruning history (which root layer lost which indices, in
order), the new head counts and the two trace inputs; ``restore_structure`` rebuilds the
dependency graph on a freshly built baseline and replays that history (no importance is
recomputed, so the structure is exactly the same), then the variant loader loads the weights.

MACs are counted with ``green_deploy.optimize.macs.count_macs``.
"""

from __future__ import annotations

import copy
import functools
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from green_deploy.config import parse_settings
from green_deploy.errors import ArtifactError, ConfigError
from green_deploy.optimize.base import NotApplicable, OptimizationContext, OptimizedModel
from green_deploy.optimize.finetune import device_of, finetune
from green_deploy.optimize.macs import count_macs

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

PLAN_FORMAT = 1
EXAMPLE_ROWS = 2  # calibration rows traced to build the dependency graph
# The only module attributes a plan may set on load: head counts, nothing arbitrary from a file.
_HEAD_ATTRIBUTES = frozenset({"heads", "num_attention_heads", "all_head_size"})


@dataclass(frozen=True)
class StructuredPruningSettings:
    """``amount``: fraction of every prunable group's channels (and of each layer's heads) removed."""

    amount: float = 0.5
    importance: str = "l2"  # magnitude norm: "l1" or "l2"
    finetune_steps: int = 0
    learning_rate: float = 1e-4
    batch_size: int = 32
    round_to: int | None = None  # keep channel counts a multiple of this (tensor-core friendly)


class StructuredPruning:
    name = "structured_pruning"
    framework = "torch"

    def settings(self, raw: Mapping[str, Any]) -> StructuredPruningSettings:
        """Typed, validated settings; unknown keys and bad values raise ``ConfigError``."""
        where = f"technique {self.name!r}"
        s = parse_settings(StructuredPruningSettings, raw, where)
        if not 0.0 < s.amount < 1.0:
            raise ConfigError(f"{where}: amount must be in (0, 1), got {s.amount}")
        if s.importance not in ("l1", "l2"):
            raise ConfigError(f"{where}: importance must be l1 or l2, got {s.importance!r}")
        if s.finetune_steps < 0:
            raise ConfigError(f"{where}: finetune_steps must be >= 0, got {s.finetune_steps}")
        if not s.learning_rate > 0.0:
            raise ConfigError(f"{where}: learning_rate must be > 0, got {s.learning_rate}")
        if s.batch_size < 1:
            raise ConfigError(f"{where}: batch_size must be >= 1, got {s.batch_size}")
        if s.round_to is not None and s.round_to < 1:
            raise ConfigError(f"{where}: round_to must be a positive integer, got {s.round_to}")
        return s

    def apply(self, model: Any, settings: Mapping[str, Any], context: OptimizationContext) -> OptimizedModel:
        s = self.settings(settings)
        import torch

        pruned = copy.deepcopy(model).eval()  # eval: tracing must not update batch-norm statistics
        device = device_of(pruned)
        example = torch.as_tensor(context.calibration_x[:EXAMPLE_ROWS]).to(device)
        with torch.no_grad():
            output_shape = tuple(pruned(example).shape)
        macs_before, params_before = count_macs(pruned, example[:1]), count_params(pruned)

        plan = prune_structure(pruned, example, s)
        try:
            with torch.no_grad():
                new_shape = tuple(pruned(example).shape)
        except RuntimeError as error:  # an architecture whose coupled widths torch-pruning missed
            raise NotApplicable(
                f"{type(model).__name__} no longer runs after torch-pruning removed channels "
                f"(its layer couplings are not all traced): {str(error).splitlines()[0]}"
            ) from error
        if new_shape != output_shape:
            raise NotApplicable(
                f"torch-pruning changed the output shape of {type(model).__name__} "
                f"from {output_shape} to {new_shape}"
            )
        macs_after, params_after = count_macs(pruned, example[:1]), count_params(pruned)
        notes = [plan.pop("summary")]

        extra: dict[str, Any] = {}
        if s.finetune_steps:
            if context.finetune_x is None or context.finetune_y is None:
                notes.append("no fine-tune: this task gives no labelled training data")
            elif context.task == "retrieval":
                notes.append("no fine-tune: embeddings have no cross-entropy target")
            else:
                losses = finetune(
                    pruned,
                    context.finetune_x,
                    context.finetune_y,
                    s.finetune_steps,
                    s.learning_rate,
                    s.batch_size,
                )
                extra["finetune_losses"] = losses
                extra["finetune_loss"] = losses[-1]
                notes.append(
                    f"fine-tuned {s.finetune_steps} Adam steps (loss {losses[0]:.4g} -> {losses[-1]:.4g})"
                )
        pruned.eval()
        notes.append(
            f"MACs {macs_before:,} -> {macs_after:,} ({macs_after / max(macs_before, 1):.1%}), "
            f"parameters {params_before:,} -> {params_after:,}"
        )
        extra.update(
            macs_before=macs_before,
            macs_after=macs_after,
            params_before=params_before,
            params_after=params_after,
            rebuild_recipe=plan,
        )
        logger.info("structured pruning of %s: %s", context.model_id, "; ".join(notes))
        return OptimizedModel(
            "torch", "pytorch", pruned, ("cpu", "cuda"), notes="; ".join(notes), extra=extra
        )


TECHNIQUE = StructuredPruning()


# --- Pruning -------------------------------------------------------------------------------------


def prune_structure(model: Any, example_inputs: torch.Tensor, s: StructuredPruningSettings) -> dict[str, Any]:
    """Prune ``model`` in place; return its rebuild plan (JSON-ready) with a ``summary`` line.

    Raises ``NotApplicable`` when no channel group can shrink without changing the output width,
    or when torch-pruning cannot trace or prune this graph.
    """
    import torch
    import torch_pruning as tp
    from torch import nn

    from green_deploy.optimize.torch_pruning_ext import LSTMHiddenPruner, MagnitudeImportance

    names = {module: name for name, module in model.named_modules()}
    attention = _attention_layers(model)
    head_dims = {name: module.query.out_features // heads for name, (module, heads, _) in attention.items()}
    with torch.enable_grad(), _quiet_tracing():
        try:
            graph = _dependency_graph(model, example_inputs)
        except Exception as exc:  # a graph torch-pruning cannot trace is a reason, not a crash
            raise NotApplicable(
                f"torch-pruning cannot trace {type(model).__name__}: {type(exc).__name__}: {exc}"
            ) from exc
        kept = _output_layers(graph, names)
        roots = [
            group[0].dep.target.module
            for group in graph.get_all_groups(ignored_layers=kept, root_module_types=_root_types())
        ]
        widths = {root: graph.get_out_channels(root) for root in roots}
        if not roots:
            embeddings = sorted(n for m, n in names.items() if isinstance(m, nn.Embedding | nn.EmbeddingBag))
            raise NotApplicable(
                f"{type(model).__name__} has no hidden channels to remove: its only Linear/Conv/LSTM "
                f"channel groups reach the model output ({_names_of(kept, names)}), whose width is kept"
                + (f"; the width of {', '.join(embeddings)} feeds them directly" if embeddings else "")
            )

        heads_removed = {name: _heads_to_remove(heads, s.amount) for name, (_, heads, _) in attention.items()}
        num_heads = {
            getattr(module, part): heads
            for module, heads, _ in attention.values()
            for part in ("query", "key", "value")
        }
        # ceil(r * H) is what torch-pruning removes; r = (n - 0.5) / H makes that exactly n.
        head_ratios = {
            module: max(heads_removed[name] - 0.5, 0.0) / heads
            for name, (module, heads, _) in attention.items()
        }
        try:
            pruner = tp.pruner.MetaPruner(
                model,
                example_inputs,
                importance=MagnitudeImportance(p=1 if s.importance == "l1" else 2),
                pruning_ratio=s.amount,
                ignored_layers=kept,
                round_to=s.round_to,
                num_heads=num_heads,
                prune_num_heads=bool(num_heads),
                prune_head_dims=False,
                head_pruning_ratio_dict=head_ratios or None,
                customized_pruners={nn.LSTM: LSTMHiddenPruner()},
                root_module_types=_root_types(),
            )
            pruner.step()
        except Exception as exc:
            raise NotApplicable(
                f"torch-pruning could not prune {type(model).__name__}: {type(exc).__name__}: {exc}"
            ) from exc

    plan_heads = _finish_attention(attention, head_dims, pruner.num_heads)
    # torch-pruning leaves a group whole rather than empty it (or round it down to 0 channels).
    unpruned = sorted(names[root] for root in roots if pruner.DG.get_out_channels(root) == widths[root])
    if len(unpruned) == len(roots):
        raise ConfigError(
            f"technique 'structured_pruning': amount {s.amount}"
            + (f" with round_to {s.round_to}" if s.round_to else "")
            + f" would remove every channel of every prunable group of {type(model).__name__}, "
            "so torch-pruning pruned none; use a smaller amount or round_to"
        )
    history = [[str(name), bool(out), [int(i) for i in idxs]] for name, out, idxs in pruner.pruning_history()]
    summary = _summary(s, attention, plan_heads, kept, names, unpruned)
    return {
        "format": PLAN_FORMAT,
        "library": f"torch-pruning {_library_version()}",
        "model_class": type(model).__qualname__,
        "settings": asdict(s),
        "example_inputs": {
            "dtype": str(example_inputs.dtype).removeprefix("torch."),
            "shape": list(example_inputs.shape),
            "values": example_inputs.detach().cpu().flatten().tolist(),
        },
        "kept_output_layers": sorted(names[m] for m in kept),
        "unpruned_groups": unpruned,
        "heads": plan_heads,
        "history": history,
        "summary": summary,
    }


def _root_types() -> list[Any]:
    import torch_pruning as tp

    return [tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM]


def _dependency_graph(model: Any, example_inputs: torch.Tensor) -> Any:
    """torch-pruning's dependency graph of ``model``, with the corrected LSTM pruner registered."""
    import torch_pruning as tp
    from torch import nn

    from green_deploy.optimize.torch_pruning_ext import LSTMHiddenPruner

    return tp.DependencyGraph().build_dependency(
        model,
        example_inputs=example_inputs,
        customized_pruners={nn.LSTM: LSTMHiddenPruner()},
        verbose=False,
    )


def _output_layers(graph: Any, names: Mapping[Any, str]) -> list[Any]:
    """Modules whose output channels reach the model output, so pruning them changes its width.

    A graph sink is the output (a final Linear, or torch-pruning's output marker after a pooling
    or normalising op); a group is kept if it prunes a sink's output channels or the marker.
    """
    import torch_pruning as tp

    sinks = {node.module for node in graph.module2node.values() if not node.outputs}
    kept: list[Any] = []
    for group in graph.get_all_groups(root_module_types=_root_types()):
        reaches_output = any(
            dep.target.type == tp.ops.OPTYPE.OUTPUT
            or (dep.target.module in sinks and graph.is_out_channel_pruning_fn(dep.handler))
            for dep, _ in group
        )
        if reaches_output:
            for dep, _ in group:
                module = dep.target.module
                if graph.is_out_channel_pruning_fn(dep.handler) and module in names and module not in kept:
                    kept.append(module)
    return kept


def _attention_layers(model: Any) -> dict[str, tuple[Any, int, str]]:
    """name -> (module, heads, head-count attribute) for our ``Attention`` and Hugging Face
    BERT-style self-attention: separate ``query``/``key``/``value`` Linear layers and a head
    count that divides the query width."""
    from torch import nn

    found = {}
    for name, module in model.named_modules():
        if not all(isinstance(getattr(module, part, None), nn.Linear) for part in ("query", "key", "value")):
            continue
        for attribute in ("heads", "num_attention_heads"):
            heads = getattr(module, attribute, None)
            if isinstance(heads, int) and heads > 0 and module.query.out_features % heads == 0:
                found[name] = (module, heads, attribute)
                break
    return found


def _heads_to_remove(heads: int, amount: float) -> int:
    """Heads removed from a layer of ``heads``: as many as channels (torch-pruning removes
    ``n - int(n * (1 - amount))``), but one head always stays."""
    return min(heads - 1, heads - int(heads * (1.0 - amount)))


def _finish_attention(
    attention: Mapping[str, tuple[Any, int, str]], head_dims: Mapping[str, int], num_heads: Mapping[Any, int]
) -> dict[str, Any]:
    """Write the new head counts onto the attention modules; returns the plan's ``heads`` entry
    (name -> attributes)."""
    plan: dict[str, Any] = {}
    for name, (module, heads, attribute) in attention.items():
        left = int(num_heads[module.query])
        head_dim = head_dims[name]
        if module.query.out_features != left * head_dim:
            raise NotApplicable(
                f"torch-pruning left {module.query.out_features} query features in {name!r}, "
                f"not whole heads ({left} x {head_dim})"
            )
        attributes = {attribute: left}
        if attribute == "num_attention_heads" and hasattr(module, "all_head_size"):
            attributes["all_head_size"] = left * head_dim
        for key, value in attributes.items():
            setattr(module, key, value)
        plan[name] = {
            "attributes": attributes,
            "heads_before": heads,
            "heads_after": left,
        }
    return plan


def _summary(
    s: StructuredPruningSettings,
    attention: Mapping[str, tuple[Any, int, str]],
    heads: Mapping[str, Any],
    kept: list[Any],
    names: Mapping[Any, str],
    unpruned: list[str],
) -> str:
    parts = [
        f"torch-pruning {_library_version()} MetaPruner, local {s.importance.upper()} group-magnitude "
        f"importance, amount {s.amount}" + (f", round_to {s.round_to}" if s.round_to else "")
    ]
    if attention:
        counts = sorted({(entry["heads_before"], entry["heads_after"]) for entry in heads.values()})
        parts.append(
            f"removed whole attention heads in {len(attention)} attention layers "
            f"({', '.join(f'{a} -> {b}' for a, b in counts)}), consistently in query/key/value and the "
            "output projection"
        )
    parts.append(f"output width kept: {_names_of(kept, names)}")
    if unpruned:
        parts.append(
            f"left whole (pruning would empty them or round them to 0): {', '.join(unpruned[:4])}"
            + (f" and {len(unpruned) - 4} more" if len(unpruned) > 4 else "")
        )
    return "; ".join(parts)


def _names_of(modules: list[Any], names: Mapping[Any, str], most: int = 4) -> str:
    listed = sorted(names[m] for m in modules)
    more = f" and {len(listed) - most} more layers of that stream" if len(listed) > most else ""
    return ", ".join(listed[:most]) + more if listed else "none"


@functools.cache
def _library_version() -> str:
    from importlib.metadata import version

    return version("torch-pruning")  # torch_pruning.__version__ lags the release (1.6.1 says 1.6.0)


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """torch-pruning warns about every parameter outside a standard layer (position tables); it
    prunes their last dimension, which is the feature dimension in our models."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
        yield


# --- Measuring ----------------------------------------------------------------------------------


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# --- Fine-tuning --------------------------------------------------------------------------------


# --- Rebuilding a saved variant -----------------------------------------------------------------


def restore_structure(base_model: Any, plan: Mapping[str, Any]) -> Any:
    """The pruned structure rebuilt on ``base_model`` (a freshly built baseline, changed in place):
    torch-pruning's recorded history is replayed, so no importance is recomputed and the shapes
    are exactly those saved. The weights are loaded afterwards by the variant loader."""
    import torch

    if plan.get("format") != PLAN_FORMAT:
        raise ArtifactError(f"pruning plan format {plan.get('format')!r}, expected {PLAN_FORMAT}")
    if plan["model_class"] != type(base_model).__qualname__:
        raise ArtifactError(
            f"the plan prunes a {plan['model_class']}, not the {type(base_model).__qualname__} given"
        )
    spec = plan["example_inputs"]
    example = torch.tensor(spec["values"], dtype=getattr(torch, spec["dtype"])).reshape(spec["shape"])
    base_model.eval()
    with torch.enable_grad(), _quiet_tracing():
        graph = _dependency_graph(base_model, example.to(device_of(base_model)))
        graph.load_pruning_history([(name, out, idxs) for name, out, idxs in plan["history"]])
    modules = dict(base_model.named_modules())
    for name, entry in plan["heads"].items():
        module = modules.get(name)
        if module is None:
            raise ArtifactError(f"the pruning plan names attention layer {name!r}, which the model lacks")
        for key, value in entry["attributes"].items():
            if key not in _HEAD_ATTRIBUTES or not isinstance(value, int):
                raise ArtifactError(
                    f"the pruning plan sets {name}.{key} = {value!r}; only head counts are allowed"
                )
            setattr(module, key, value)
    return base_model.eval()

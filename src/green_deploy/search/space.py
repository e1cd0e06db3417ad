"""What a search trial chooses, and the optimize recipe its choices make.

A trial picks a framework, then for PyTorch: a pruning method (none, unstructured magnitude
pruning, structured channel/head pruning) with its ratio, the layers it leaves alone and the
fine-tune steps after it, then a quantization (none, dynamic or static int8, float16, bfloat16);
for TensorFlow: tfmot pruning (none, unstructured, 2:4) with its ratio and fine-tune steps, then a
TFLite conversion with its quantization; for an ONNX graph (a user's own): ONNX Runtime's
quantization (none is the baseline) and whether its weights get one scale per channel. The choices become a ``VariantSpec`` of the optimize
pipeline's techniques, so a trial is built exactly as a declared variant is.

Parameter names are prefixed per framework (``tf_...``) where the choices differ: Optuna keeps
one distribution per name in a study.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from green_deploy.errors import ConfigError
from green_deploy.optimize.spec import Step, VariantSpec, parse_variant

TORCH_PRUNING = ("none", "unstructured", "structured")
TORCH_QUANTIZATION = ("none", "dynamic_int8", "static_int8", "float16", "bfloat16")
KEEP_LAYERS = ("none", "first", "output", "first_and_output")
TF_PRUNING = ("none", "unstructured", "2:4")
TF_QUANTIZATION = ("none", "dynamic_int8", "float16", "full_int8")
ONNX_QUANTIZATION = ("none", "dynamic_int8", "static_int8")
FRAMEWORKS = ("torch", "tensorflow", "onnx")
_ID_PREFIXES = {"torch": "pt", "tensorflow": "tf", "onnx": "onnx"}


class Suggester(Protocol):
    """The part of ``optuna.Trial`` a space uses (a fixed mapping in tests and replays)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...


@dataclass(frozen=True)
class SearchSpace:
    """``search.space`` in ``parameters_search.yml``: the choices and ranges open to trials."""

    frameworks: tuple[str, ...] = ("torch",)
    pruning: tuple[str, ...] = TORCH_PRUNING
    amount: tuple[float, float] = (0.1, 0.9)
    finetune_steps: tuple[int, int] = (0, 200)
    finetune_step: int = 25
    keep_layers: tuple[str, ...] = KEEP_LAYERS
    quantization: tuple[str, ...] = TORCH_QUANTIZATION
    tf_pruning: tuple[str, ...] = TF_PRUNING
    tf_quantization: tuple[str, ...] = TF_QUANTIZATION
    onnx_quantization: tuple[str, ...] = ONNX_QUANTIZATION

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> SearchSpace:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"search.space: unknown key(s) {unknown}; allowed: {sorted(known)}")
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()
        }
        space = cls(**values)
        space.check()
        return space

    def check(self) -> None:
        choices = {
            "frameworks": FRAMEWORKS,
            "pruning": TORCH_PRUNING,
            "keep_layers": KEEP_LAYERS,
            "quantization": TORCH_QUANTIZATION,
            "tf_pruning": TF_PRUNING,
            "tf_quantization": TF_QUANTIZATION,
            "onnx_quantization": ONNX_QUANTIZATION,
        }
        for key, allowed in choices.items():
            chosen = getattr(self, key)
            if not chosen or sorted(set(chosen) - set(allowed)):
                raise ConfigError(f"search.space.{key} must list some of {list(allowed)}; got {list(chosen)}")
        low, high = self.amount
        if not 0.0 < low <= high < 1.0:
            raise ConfigError(
                f"search.space.amount must be [low, high] within (0, 1); got {list(self.amount)}"
            )
        low_steps, high_steps = self.finetune_steps
        if not 0 <= low_steps <= high_steps or self.finetune_step < 1:
            raise ConfigError(
                f"search.space.finetune_steps must be [low, high] with 0 <= low <= high and finetune_step >= 1; "
                f"got {list(self.finetune_steps)} by {self.finetune_step}"
            )


def space_for_model(space: SearchSpace, model_id: str, built: Sequence[str]) -> SearchSpace:
    """The space narrowed to the frameworks ``model_id`` was built in (a user's own model has one);
    none of them in the space is a clear error, not a study of failing trials."""
    frameworks = tuple(f for f in space.frameworks if f in built)
    if not frameworks:
        raise ConfigError(
            f"search.space.frameworks {list(space.frameworks)} has none of the frameworks {model_id} is built in "
            f"({list(built)}); add {built[0]} to search.space.frameworks"
        )
    return replace(space, frameworks=frameworks)


def suggest_variant(trial: Suggester, space: SearchSpace) -> VariantSpec:
    """The variant a trial's choices describe; no steps at all is the framework's baseline."""
    framework = (
        space.frameworks[0]
        if len(space.frameworks) == 1
        else trial.suggest_categorical("framework", list(space.frameworks))
    )
    steps = {"torch": _torch_steps, "tensorflow": _tensorflow_steps, "onnx": _onnx_steps}[framework](
        trial, space
    )
    return variant_spec(framework, steps)


def variant_spec(framework: str, steps: Sequence[Step]) -> VariantSpec:
    """A search variant, named by its recipe: the same choices give the same id (and files) in
    every trial and on every worker, so a retried trial reuses what was built and measured."""
    recipe = json.dumps([[s.technique, s.settings] for s in steps], sort_keys=True)
    digest = hashlib.sha256(f"{framework}:{recipe}".encode()).hexdigest()[:12]
    variant_id = f"search_{_ID_PREFIXES[framework]}_{digest}"
    raw = {
        "framework": framework,
        "steps": [{"technique": s.technique, "settings": s.settings} for s in steps],
    }
    if not steps:
        return VariantSpec(variant_id, framework, ())
    return parse_variant(variant_id, raw)  # the optimize pipeline's own checks


def _finetune_steps(trial: Suggester, space: SearchSpace, name: str, at_least_one: bool = False) -> int:
    """Fine-tune steps on the space's grid; tfmot acts only in training steps, so it gets one step of the grid at least."""
    low, high = space.finetune_steps
    if at_least_one and low == 0:
        low = space.finetune_step
    return trial.suggest_int(name, low, max(low, high), step=space.finetune_step)


def _torch_steps(trial: Suggester, space: SearchSpace) -> list[Step]:
    steps: list[Step] = []
    pruning = trial.suggest_categorical("pruning", list(space.pruning))
    keep = "none"
    if pruning != "none":
        amount = round(trial.suggest_float("amount", *space.amount), 4)
        finetune_steps = _finetune_steps(trial, space, "finetune_steps")
        if pruning == "unstructured":
            keep = trial.suggest_categorical("keep_layers", list(space.keep_layers))
            settings = {
                "amount": amount,
                "scope": "global",
                "finetune_steps": finetune_steps,
                "keep_first_layer": keep in ("first", "first_and_output"),
                "keep_output_layer": keep in ("output", "first_and_output"),
            }
            steps.append(Step("magnitude_pruning", settings))
        else:  # structured pruning never removes the output layer's classes
            steps.append(Step("structured_pruning", {"amount": amount, "finetune_steps": finetune_steps}))
    quantization = trial.suggest_categorical("quantization", list(space.quantization))
    if quantization == "dynamic_int8":
        if pruning != "unstructured":
            keep = trial.suggest_categorical("keep_layers", list(space.keep_layers))
        steps.append(Step("dynamic_int8", {"keep_output_layer": keep in ("output", "first_and_output")}))
    elif quantization == "static_int8":
        steps.append(Step("static_int8", {}))
    elif quantization in ("float16", "bfloat16"):
        steps.append(Step("half_precision", {"dtype": quantization}))
    return steps


def _tensorflow_steps(trial: Suggester, space: SearchSpace) -> list[Step]:
    steps: list[Step] = []
    pruning = trial.suggest_categorical("tf_pruning", list(space.tf_pruning))
    if pruning != "none":
        sparsity: dict[str, Any] = (
            {"sparsity_m_by_n": [2, 4]}
            if pruning == "2:4"
            else {"sparsity": round(trial.suggest_float("tf_amount", *space.amount), 4)}
        )
        finetune_steps = _finetune_steps(trial, space, "tf_finetune_steps", at_least_one=True)
        steps.append(Step("tfmot_pruning", {**sparsity, "finetune_steps": finetune_steps}))
    quantization = trial.suggest_categorical("tf_quantization", list(space.tf_quantization))
    steps.append(Step("tflite", {"quantization": quantization}))
    return steps


def _onnx_steps(trial: Suggester, space: SearchSpace) -> list[Step]:
    quantization = trial.suggest_categorical("onnx_quantization", list(space.onnx_quantization))
    if quantization == "none":
        return []  # the graph as given
    per_channel = trial.suggest_categorical("onnx_per_channel", [True, False])
    return [Step("onnx", {"quantization": quantization, "per_channel": per_channel})]

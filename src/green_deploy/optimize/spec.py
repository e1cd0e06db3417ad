"""Variants are configuration: a variant is one technique or a chain of them (prune -> quantize)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from green_deploy.errors import ConfigError
from green_deploy.optimize.techniques import known_techniques
from green_deploy.zoo.baselines import FRAMEWORKS

# The baselines (``zoo.baselines``) each technique starts from; the others start from PyTorch.
# ``onnx`` exports a PyTorch model and quantizes it in ONNX Runtime, or quantizes an ONNX graph.
TECHNIQUE_FRAMEWORKS = {
    "tflite": ("tensorflow",),
    "tfmot_pruning": ("tensorflow",),
    "tfmot_qat": ("tensorflow",),
    "onnx": ("torch", "onnx"),
}
# Their result is a serialized model (TFLite flatbuffer, ONNX graph) that no further step takes.
SERIALIZING_TECHNIQUES = {"tflite", "tfmot_qat", "onnx"}


@dataclass(frozen=True)
class Step:
    technique: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantSpec:
    """``steps`` run in order on the framework's baseline; each technique gets the previous result."""

    variant_id: str
    framework: str
    steps: tuple[Step, ...]
    description: str = ""

    @property
    def technique(self) -> str:
        return "+".join(step.technique for step in self.steps)

    def config_sha256(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()


def parse_variant(variant_id: str, raw: Mapping[str, Any]) -> VariantSpec:
    """One entry of ``optimize.variants``: ``{framework, technique, settings}`` or ``{framework, steps: [...]}``."""
    where = f"optimize.variants.{variant_id}"
    allowed = {"framework", "technique", "settings", "steps", "description"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    if ("steps" in raw) == ("technique" in raw):
        raise ConfigError(f"{where}: give either technique (+ settings) or steps, not both or neither")
    raw_steps = (
        raw["steps"]
        if "steps" in raw
        else [{"technique": raw["technique"], "settings": raw.get("settings") or {}}]
    )
    steps = []
    for index, step in enumerate(raw_steps):
        extra = sorted(set(step) - {"technique", "settings"})
        if extra or "technique" not in step:
            raise ConfigError(
                f"{where}.steps[{index}] needs technique (and optional settings); got keys {sorted(step)}"
            )
        if step["technique"] not in known_techniques():
            raise ConfigError(
                f"{where}.steps[{index}]: unknown technique {step['technique']!r}; known: {', '.join(known_techniques())}"
            )
        steps.append(Step(step["technique"], dict(step.get("settings") or {})))
    framework = raw.get("framework")
    misfits = [
        s.technique for s in steps if framework not in TECHNIQUE_FRAMEWORKS.get(s.technique, ("torch",))
    ]
    if framework not in FRAMEWORKS or misfits:
        raise ConfigError(
            f"{where}: framework must be one of {', '.join(FRAMEWORKS)} and every step's technique must start from "
            f"it; got {framework!r} for {[s.technique for s in steps]}"
        )
    if any(s.technique in SERIALIZING_TECHNIQUES for s in steps[:-1]):
        raise ConfigError(
            f"{where}: {', '.join(sorted(SERIALIZING_TECHNIQUES))} must be the last step "
            "(their result is a serialized model: a TFLite flatbuffer or an ONNX graph)"
        )
    return VariantSpec(variant_id, framework, tuple(steps), raw.get("description", ""))


def parse_variants(raw: Mapping[str, Any]) -> dict[str, VariantSpec]:
    return {variant_id: parse_variant(variant_id, spec) for variant_id, spec in raw.items()}


def select_variants(
    variants: Mapping[str, VariantSpec], only: str | list[str] | None
) -> dict[str, VariantSpec]:
    """The variants named in ``only``; all when empty. ``only`` is a list, or a string of ids separated
    by spaces (``kedro run --params "optimize.only=pt_fp16 tf_tflite_fp16"``: Kedro itself splits
    ``--params`` at every comma) or commas (in YAML)."""
    if not only:
        return dict(variants)
    names = re.split(r"[,\s]+", only.strip()) if isinstance(only, str) else list(only)
    unknown = sorted(set(names) - set(variants))
    if unknown:
        raise ConfigError(
            f"optimize.only names unknown variant(s) {unknown}; declared: {', '.join(sorted(variants))}"
        )
    return {name: variants[name] for name in names}


def planned_variants(
    variants: Mapping[str, VariantSpec],
    plan: Mapping[str, Any] | None,
    model_id: str,
    model_ids: Collection[str],
) -> dict[str, VariantSpec]:
    """The variants a study builds for ``model_id``, in declaration order.

    ``plan`` (``optimize.plan``) maps variant ids to the zoo models they are applied to: a list
    of model ids, or ``all``. ``None`` applies every variant of ``variants`` to every model (the
    full study). A variant id or model id the plan names but nobody declared is an error.
    """
    if plan is None:
        return dict(variants)
    if not isinstance(plan, Mapping):
        raise ConfigError(f"optimize.plan must map variant ids to model lists (or all), got {plan!r}")
    applied: dict[str, set[str]] = {}
    for variant_id, models in plan.items():
        if variant_id not in variants:
            raise ConfigError(
                f"optimize.plan names undeclared variant {variant_id!r}; declared: {', '.join(sorted(variants))}"
            )
        if models == "all":
            applied[variant_id] = set(model_ids)
            continue
        if not isinstance(models, list | tuple) or not all(isinstance(m, str) for m in models):
            raise ConfigError(
                f"optimize.plan.{variant_id} must be a list of zoo model ids or all, got {models!r}"
            )
        unknown = sorted(set(models) - set(model_ids))
        if unknown:
            raise ConfigError(
                f"optimize.plan.{variant_id} names unknown model(s) {unknown}; known: {sorted(model_ids)}"
            )
        applied[variant_id] = set(models)
    return {
        variant_id: spec
        for variant_id, spec in variants.items()
        if variant_id in applied and model_id in applied[variant_id]
    }


# The keys of ``optimize`` in parameters_optimize.yml.
OPTIMIZE_KEYS = ("variants_dir", "only", "plan", "run", "variants")

"""Hub models (torchvision-class CNNs, BERT-class encoders, code models) through ``transformers``.

These entries size the full study on a GPU machine. Weights come from a local folder in the
hub's own layout (``save_pretrained`` or a downloaded snapshot) or, where the machine may reach
it, the hub itself; with ``HF_HUB_OFFLINE=1`` (the default here) an absent model is a clear
``HubUnavailableError``. ``architecture_only`` builds the model from its configuration with
random weights, so energy can be measured at realistic sizes where weights cannot be had; its
accuracy is then not applicable and is never reported as a number.

(torchvision's own loaders are not used: no CPU build of torchvision matches the pinned torch
here, while ``transformers`` ships ResNet, MobileNet and ViT with the same architectures.)
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from green_deploy.errors import ConfigError, HubUnavailableError, ModelNotFoundError
from green_deploy.zoo.spec import ZooEntry

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random (architecture only)"


@dataclass(frozen=True)
class HubEntry:
    """One configured hub model (``zoo.hub.<model_id>``)."""

    model_id: str
    repo_id: str
    auto_class: str
    domain: str
    task: str
    local_dir: str | None = None
    architecture_only: bool = False
    model_type: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class HubModel:
    """A loaded hub model; ``weights`` is ``pretrained`` or ``random (architecture only)``."""

    entry: HubEntry
    model: Any
    weights: str
    n_parameters: int

    @property
    def accuracy_applicable(self) -> bool:
        return self.weights == "pretrained"


def parse_hub_entry(model_id: str, raw: Mapping[str, Any]) -> HubEntry:
    allowed = {f.name for f in fields(HubEntry)} - {"model_id"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"zoo.hub.{model_id}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted({"repo_id", "auto_class", "domain", "task"} - set(raw))
    if missing:
        raise ConfigError(f"zoo.hub.{model_id}: missing key(s) {missing}")
    entry = HubEntry(
        model_id=model_id, **{**raw, "config_overrides": dict(raw.get("config_overrides") or {})}
    )
    if entry.architecture_only and entry.model_type is None and entry.local_dir is None:
        raise ConfigError(
            f"zoo.hub.{model_id}: architecture_only needs model_type (or a local_dir holding config.json)"
        )
    return entry


def _auto_class(name: str) -> Any:
    transformers = importlib.import_module("transformers")
    if not name.startswith("Auto") or not hasattr(transformers, name):
        raise ConfigError(
            f"auto_class {name!r} is not a transformers Auto class (e.g. AutoModelForImageClassification)"
        )
    return getattr(transformers, name)


def load_hub_model(entry: HubEntry) -> HubModel:
    """Load ``entry`` from its local folder, the hub cache or the hub, or build it from its config."""
    auto_class = _auto_class(entry.auto_class)
    if entry.architecture_only:
        model = auto_class.from_config(_architecture_config(entry))
        weights = RANDOM_WEIGHTS
    else:
        model = auto_class.from_pretrained(_weights_source(entry), **entry.config_overrides)
        weights = "pretrained"
    model.eval()
    n_parameters = sum(p.numel() for p in model.parameters())
    logger.info(
        "%s: %s, %s weights, %.1f M parameters",
        entry.model_id,
        type(model).__name__,
        weights,
        n_parameters / 1e6,
    )
    return HubModel(entry=entry, model=model, weights=weights, n_parameters=n_parameters)


def _architecture_config(entry: HubEntry) -> Any:
    from transformers import AutoConfig

    if entry.model_type is not None:
        return AutoConfig.for_model(entry.model_type, **entry.config_overrides)
    return AutoConfig.from_pretrained(_weights_source(entry), **entry.config_overrides)


def _weights_source(entry: HubEntry) -> str:
    """The local folder when configured, else the repo id, which must then be reachable or cached."""
    if entry.local_dir is not None:
        folder = Path(entry.local_dir).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"zoo.hub.{entry.model_id}.local_dir {folder} holds no Hugging Face model (no config.json); "
                f"save one there with `save_pretrained` or download {entry.repo_id!r} into it"
            )
        return str(folder)
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(entry.repo_id, "config.json"), str):
        raise HubUnavailableError(
            f"{entry.repo_id!r} ({entry.model_id}) is not in the local Hugging Face cache and the hub is off "
            f"(HF_HUB_OFFLINE=1). Either download it on a connected machine "
            f"(`hf download {entry.repo_id} --local-dir <folder>`) and set zoo.hub.{entry.model_id}.local_dir, "
            f"or set architecture_only: true to measure energy with random weights."
        )
    return entry.repo_id


def select_hub_entry(hub: Mapping[str, Any], model_id: str) -> HubEntry:
    if model_id not in hub:
        raise ModelNotFoundError(f"{model_id!r} is not in zoo.hub; known: {', '.join(sorted(hub))}")
    return parse_hub_entry(model_id, hub[model_id])


CLASSIFIERS = {"cv": "AutoModelForImageClassification", "nlp": "AutoModelForSequenceClassification"}


def has_random_weights(entry: ZooEntry) -> bool:
    """Whether a zoo entry is an own Hugging Face folder written by ``save_architecture_folder``
    (its ``config.json`` says so): its accuracy is chance, not a finding."""
    config = Path(str(entry.architecture.get("path") or "")) / "config.json"
    if entry.family != "huggingface" or not config.is_file():
        return False
    return json.loads(config.read_text()).get("green_deploy_weights") == RANDOM_WEIGHTS


def save_architecture_folder(
    entry: HubEntry, folder: Path, classes: list[str], tokenizer_dir: Path | None = None, seed: int = 0
) -> Path:
    """``entry``'s architecture as a classifier of ``classes`` with random weights, saved in the
    hub's layout (``config.json``, safetensors, the tokenizer of ``tokenizer_dir`` or an image
    processor for 224x224 images), so the own-model path (``family: huggingface``) studies it at
    its real size where its weights cannot be had. ``config.json`` says ``green_deploy_weights:
    random (architecture only)``: what the model predicts is chance, so its accuracy says
    nothing; its energy, latency and memory are the architecture's."""
    import torch

    image = entry.domain == "cv"
    if not image and tokenizer_dir is None:
        raise ConfigError(f"{entry.model_id}: a text model's folder needs a tokenizer (tokenizer_dir)")
    config = _architecture_config(entry)
    config.num_labels = len(classes)
    config.id2label = dict(enumerate(classes))
    config.label2id = {name: index for index, name in enumerate(classes)}
    config.green_deploy_weights = RANDOM_WEIGHTS
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        from transformers import ViTImageProcessor

        ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(str(folder))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        config.pad_token_id = tokenizer.pad_token_id  # GPT-2 class models have none of their own
        tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    model = _auto_class(CLASSIFIERS["cv" if image else "nlp"]).from_config(config)
    model.save_pretrained(str(folder))
    logger.info(
        "%s: %s with random weights, %.1f M parameters, saved in %s",
        entry.model_id,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        folder,
    )
    return folder

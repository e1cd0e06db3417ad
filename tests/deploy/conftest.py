"""A tiny saved variant, its input and its in-process outputs, shared by the deploy tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from green_deploy.deploy import Variant
from green_deploy.serving.model import InputSpec, load_model_files

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
ARCH = {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32, "patch_size": 7}
N_OUTPUTS = 10


@dataclass(frozen=True)
class TinyVariant:
    variant: Variant
    batch: np.ndarray  # encoded images, float32 (N, 1, 28, 28)
    expected: np.ndarray  # the saved variant's outputs, in process


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyVariant:
    """A ViT pruned to 50% by the optimize technique, saved as the optimize pipeline saves it."""
    from green_deploy.optimize.artifacts import save_variant
    from green_deploy.optimize.base import OptimizationContext
    from green_deploy.optimize.spec import parse_variant
    from green_deploy.optimize.techniques import get_technique
    from green_deploy.zoo.families import get_family
    from green_deploy.zoo.inference import predict_torch

    family = get_family("vit")
    images = (np.random.default_rng(0).random((4, 28, 28)) * 255).astype(np.uint8)
    batch = family.encode(images, ARCH)
    model = family.build_torch(ARCH, N_OUTPUTS).eval()
    context = OptimizationContext(
        "tiny_vit", "vit", "classification", ARCH, N_OUTPUTS, batch, batch, np.arange(4)
    )
    spec = parse_variant(
        "pt_prune50", {"framework": "torch", "technique": "magnitude_pruning", "settings": {"amount": 0.5}}
    )
    optimized = get_technique("magnitude_pruning").apply(model, spec.steps[0].settings, context)
    folder = tmp_path_factory.mktemp("variants") / "tiny_vit" / "pt_prune50"
    base_config = {"family": "vit", "architecture": ARCH, "n_outputs": N_OUTPUTS}
    save_variant(optimized, spec, base_config, folder)
    (folder / "record.json").write_text(
        json.dumps({"model_id": "tiny_vit", "variant_id": "pt_prune50", "runtime": "pytorch", "status": "ok"})
    )
    expected = predict_torch(load_model_files(folder, "pytorch"), batch)
    variant = Variant.from_folder(folder, InputSpec.from_example(batch))
    return TinyVariant(variant, batch, np.asarray(expected))


@pytest.fixture
def constraints_file() -> str:
    return str(CONSTRAINTS)


@pytest.fixture(scope="session")
def serving_answer(tiny) -> bytes:
    """The serving core's own JSON answer for ``tiny.batch``, from its app run in process."""
    from starlette.testclient import TestClient

    from green_deploy.energy import EnergyMonitor, discover_sources
    from green_deploy.serving import create_app, load_served_model

    served = load_served_model(tiny.variant.folder, "pytorch", tiny.variant.input_spec, "pt_prune50")
    app = create_app(served, EnergyMonitor(discover_sources(gpu=False)))
    with TestClient(app) as client:
        response = client.post("/v1/predict", json={"inputs": tiny.batch.tolist()})
    assert response.status_code == 200, response.text
    return response.content


def sagemaker_settings(constraints_file: str, **overrides) -> dict:
    return {
        "region": "us-east-1",
        "role_arn": "arn:aws:iam::123456789012:role/green-deploy-sagemaker",
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/green-deploy-serving:1",
        "bucket": "green-deploy-models",
        "constraints_file": constraints_file,
        "poll_interval_s": 0.05,
        "wait_timeout_s": 10.0,
        **overrides,
    }

"""The in-process target (the serving core's metered worker, no HTTP) and the comparison of two
deployments of one variant: the local HTTP server against the in-process worker."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.deploy import (
    Deployer,
    DeploymentError,
    InProcessDeployer,
    LocalDeployer,
    LocalSettings,
    Variant,
    compare_deployments,
    teardown_all,
)

pytestmark = pytest.mark.timeout(300)


def test_deploy_predict_teardown_in_process(tiny):
    inproc = InProcessDeployer(gpu_energy=False, cost_per_hour_usd=0.1)
    assert isinstance(inproc, Deployer)
    deployment = inproc.deploy(tiny.variant)
    assert (deployment.target, deployment.status, deployment.pue) == ("inprocess", "in_service", 1.0)
    outputs, energy = inproc.predict(deployment, tiny.batch)
    np.testing.assert_array_equal(outputs, tiny.expected)
    assert energy.energy_j > 0 and energy.energy_per_item_j == pytest.approx(energy.energy_j / 4)
    assert {c["component"] for c in energy.components} >= {"cpu"}
    with pytest.raises(DeploymentError, match="takes float32"):
        inproc.predict(deployment, tiny.batch.astype(np.float64))
    inproc.teardown(deployment)
    with pytest.raises(DeploymentError, match="not deployed"):
        inproc.predict(deployment, tiny.batch)
    inproc.teardown(deployment)  # already gone: not an error


def test_a_stopped_variant_gives_its_gpu_memory_back(tiny, monkeypatch):
    """PyTorch keeps a stopped model's GPU blocks cached in this process: emptied at teardown,
    so the next variant's cells do not count them (the GPU is faked: none here)."""
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    inproc = InProcessDeployer(gpu_energy=False)
    deployment = inproc.deploy(tiny.variant)
    assert not emptied
    inproc.teardown(deployment)
    assert emptied == [True]


def test_http_and_in_process_compared_over_n_requests(tiny, tmp_path):
    local = LocalDeployer(LocalSettings(gpu_energy=False), tmp_path / "deploy")
    inproc = InProcessDeployer(gpu_energy=False)
    served = local.deploy(tiny.variant)
    try:
        comparison = compare_deployments(
            (local, served),
            (inproc, inproc.deploy(tiny.variant)),
            tiny.batch,
            n_requests=8,
            warmup_requests=1,
        )
    finally:
        teardown_all(tmp_path / "deploy")
        inproc.teardown_all()
    assert comparison.max_abs_output_diff == 0.0
    assert (comparison.first.target, comparison.second.target) == ("local", "inprocess")
    assert comparison.first.n_requests == comparison.second.n_requests == 8
    # both paths timed (which is faster is a benchmark's question: on a busy 2-core machine
    # 8 requests put either first; bench/results/providers.md has the measured overhead)
    assert comparison.first.latency_median_s > 0 and comparison.second.latency_median_s > 0
    assert comparison.latency_median_diff_s == pytest.approx(
        comparison.second.latency_median_s - comparison.first.latency_median_s
    )
    assert comparison.first.energy_per_request_j > 0 and comparison.second.energy_per_request_j > 0
    row = comparison.to_dict()
    assert row["first_target"] == "local" and row["energy_per_request_diff_j"] == pytest.approx(
        comparison.second.energy_per_request_j - comparison.first.energy_per_request_j
    )


def test_only_deployments_of_one_variant_are_compared(tiny):
    inproc = InProcessDeployer(gpu_energy=False)
    a = inproc.deploy(tiny.variant)
    other = Variant("other_model", "pt_prune50", tiny.variant.folder, "pytorch", tiny.variant.input_spec)
    b = inproc.deploy(other)
    try:
        with pytest.raises(ValueError, match="one variant"):
            compare_deployments((inproc, a), (inproc, b), tiny.batch, n_requests=1)
    finally:
        inproc.teardown_all()


def test_the_warm_up_call_runs_a_real_example_when_given():
    """All zeros is all padding for a text model: an int8 n-gram model divides by a zero count."""
    from green_deploy.serving.model import InputSpec, ServedModel

    def needs_tokens(ids: np.ndarray) -> np.ndarray:
        counts = (ids != 0).sum(axis=1, keepdims=True)
        if (counts == 0).any():
            raise RuntimeError("division by a zero count")
        return ids / counts

    served = ServedModel("bag", "pytorch", needs_tokens, InputSpec("int64", (4,)))
    inproc = InProcessDeployer(gpu_energy=False)
    with pytest.raises(RuntimeError, match="zero count"):
        inproc.serve("ngram", served)
    deployment = inproc.serve("ngram", served, warmup_example=np.array([[5, 7, 0, 0]]))
    outputs, _ = inproc.predict(deployment, np.array([[1, 2, 3, 0]]))
    np.testing.assert_allclose(outputs, [[1 / 3, 2 / 3, 1, 0]])
    inproc.teardown(deployment)

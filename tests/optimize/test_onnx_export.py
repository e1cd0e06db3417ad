"""Exporting a PyTorch module to ONNX: a dynamic batch axis, and a failure named by its reason."""

from __future__ import annotations

import numpy as np
import pytest

from green_deploy.optimize.onnx_export import ExportError, export_onnx, first_line
from green_deploy.runtimes.onnxruntime import onnx_tensor_stats, predict_onnx


def test_export_makes_the_batch_axis_dynamic_even_from_one_example():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    exported = export_onnx(model, np.ones((1, 3), np.float32))
    x = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(predict_onnx(exported, x), expected, atol=1e-6)
    assert onnx_tensor_stats(exported)["n_parameters"] == sum(p.numel() for p in model.parameters())


def test_export_failure_is_an_export_error_with_the_reason():
    import torch
    from torch import nn

    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # a Python branch on a value: torch.export cannot trace it
                return x
            return -x

    with pytest.raises(ExportError) as caught:
        export_onnx(Branchy(), np.ones((2, 3), np.float32))
    assert str(caught.value)
    assert "Failed to export" not in str(caught.value)


def test_first_line_reads_the_exporter_summary():
    message = (
        "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of exporting.\n"
        "- Modify the model code\n\n## Exception summary\n\n"
        "<class 'torch._dynamo.exc.Unsupported'>: data-dependent branch\n\n(Refer to the full stack trace)"
    )
    assert first_line(RuntimeError(message)) == "Unsupported: data-dependent branch"
    assert first_line(KeyError("")) == "''"
    assert first_line(RuntimeError("\n  no kernel for Foo\nmore")) == "no kernel for Foo"
    assert first_line(RuntimeError("")) == "RuntimeError"

"""Where a GPU variant's time goes: wall time per forward and the top CUDA kernels, eager bf16
against the variant, on BERT-base and ViT-B/16 architectures with random weights.

Written after the GPU study (bench/results/evaluate_h100_80gb_hbm3_run2.md) found two cells that
contradict the kernels' promise: fp8 at 1.2-1.8x bf16's J/inference from batch 32 (3.8x its
latency at batch 256 on BERT-base) and ViT-B/16 replayed as CUDA graphs at 2.2x eager from batch
32 while BERT-base's graphs cost 0.5-0.9x. The layers are green-deploy's own (``Float8Linear``,
``CudaGraphed``), placed on the GPU as the runtime places them. Run on the GPU machine:

    PYTHONPATH=src python3 bench/gpu_kernels.py --out bench/results

It writes ``gpu_kernels_<gpu>.md``. It changes no GPU setting.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from green_deploy.optimize.quantized_linear import Float8Linear
from green_deploy.optimize.torch_modules import CudaGraphed
from green_deploy.runtimes.pytorch import place

ITERATIONS = 10


def bert(batch: int) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(), add_pooling_layer=False).eval()
    ids = torch.randint(1000, 20000, (batch, 128), device="cuda")
    return model, lambda: ids


def vit(batch: int) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    from transformers import ViTConfig, ViTModel

    model = ViTModel(ViTConfig(), add_pooling_layer=False).eval()
    pixels = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    return model, lambda: pixels


class FirstOutput(nn.Module):
    """The model's last hidden state only (a tensor, as CudaGraphed records)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).last_hidden_state


def as_fp8(model: nn.Module) -> nn.Module:
    """Every Linear as ``Float8Linear`` with a calibrated-looking static input scale (amax 8)."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
                setattr(module, child_name, Float8Linear.from_linear(child, 8.0, torch.bfloat16))
    return model


def timed(forward: Callable[[], torch.Tensor]) -> float:
    for _ in range(3):
        forward()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        forward()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / ITERATIONS


def top_kernels(forward: Callable[[], torch.Tensor], rows: int = 8) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            forward()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name()
    name = "gpu_kernels_" + "".join(c if c.isalnum() else "_" for c in gpu.lower()).strip("_")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Where GPU variants spend their time: {gpu}", "", f"torch {torch.__version__}", ""]
    cases = [
        ("bert_base", bert, 256, "fp8", as_fp8),
        ("bert_base", bert, 32, "fp8", as_fp8),
        ("vit_b16", vit, 32, "cuda graph", None),
        ("vit_b16", vit, 256, "cuda graph", None),
        ("bert_base", bert, 32, "cuda graph", None),
    ]
    for model_id, build, batch, variant, convert in cases:
        base, inputs = build(batch)
        base = FirstOutput(base).to(torch.bfloat16)
        optimized = convert(FirstOutput(build(batch)[0]).to(torch.bfloat16)) if convert else CudaGraphed(base)
        place(base, "cuda")
        place(optimized, "cuda")
        with torch.inference_mode():
            eager_s = timed(lambda: base(inputs()))
            variant_s = timed(lambda: optimized(inputs()))
            lines += [
                f"## {model_id}, batch {batch}: bf16 eager {1e3 * eager_s:.2f} ms, {variant} {1e3 * variant_s:.2f} ms "
                f"per forward ({variant_s / eager_s:.2f}x)",
                "",
                "bf16 eager:",
                "```",
                top_kernels(lambda: base(inputs())),
                "```",
                f"{variant}:",
                "```",
                top_kernels(lambda: optimized(inputs())),
                "```",
                "",
            ]
        print(
            f"{model_id} b{batch}: eager {1e3 * eager_s:.2f} ms, {variant} {1e3 * variant_s:.2f} ms",
            flush=True,
        )
        (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")  # each case kept as it ends


if __name__ == "__main__":
    main()

"""Where a GPU variant's time goes: wall time per forward and the top CUDA kernels, eager bf16
against the variant, on BERT-base and ViT-B/16 architectures with random weights.

Written after the GPU study (bench/results/evaluate_h100_80gb_hbm3_run2.md) found two cells that
contradict the kernels' promise: fp8 at 1.2-1.8x bf16's J/inference from batch 32 (3.8x its
latency at batch 256 on BERT-base) and ViT-B/16 replayed as CUDA graphs at 2.2x eager from batch
32 while BERT-base's graphs cost 0.5-0.9x. The layers are green-deploy's own (``Float8Linear``,
``CudaGraphed``; fp8 also compiled whole, as ``pt_fp8_compile``), placed on the GPU as the
runtime places them. Two narrower cases first: the fp8 input cast alone, eager and compiled on a
tiny and on a layer-sized first input; and ViT-B/16's attention per SDPA backend, eager and
replayed from a graph, and which backend transformers' ViT attention gets while a graph records
it. Run on the GPU machine (with .whl and .whl-kedro
carried: gpu_setup.sh installs the transformers the project pins over the image's 5.17):

    source scripts/gpu_setup.sh && python3 bench/gpu_kernels.py --out bench/results

``--match TEXT`` runs only the model cases whose "model variant" holds TEXT; ``--compiled-attention``
only the section on which attention a whole-model compile keeps (the fourth and fifth GPU studies'
compiled ViT-B/16 and BERT-base ran float32 math attention). It writes ``gpu_kernels_<gpu>.md``
headed by the command that ran. It changes no GPU setting.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from green_deploy.optimize.quantized_linear import EXAMPLE_ROWS, EXAMPLE_WIDTH, Float8Linear, _to_fp8
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
    for _, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
                setattr(module, child_name, Float8Linear.from_linear(child, 8.0, torch.bfloat16))
    return model


def as_compiled(dynamic: bool) -> Callable[[nn.Module], nn.Module]:
    """The bf16 model compiled whole as ``pt_bf16_compile`` compiles it (``dynamic: true``), or with
    static shapes: ViT-B/16 compiled took 1.6x eager's GPU energy from batch 32 in the fourth
    GPU study (bench/results/evaluate_h100_80gb_hbm3_run4.md) while BERT-base's took 0.8x."""
    from green_deploy.optimize.techniques.torch_compile import compile_model

    def convert(model: nn.Module) -> nn.Module:
        torch._dynamo.reset()
        return compile_model(model, "default", dynamic)

    return convert


def as_fp8_compiled(model: nn.Module) -> nn.Module:
    """``as_fp8``, then the whole model compiled as ``pt_fp8_compile`` compiles it: each input cast
    traced with the work before it (compiled on the first timed call)."""
    return as_compiled(True)(as_fp8(model))


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


def per_call_us(call: Callable[[], object], calls: int = 50) -> float:
    """Microseconds of GPU time per call (CUDA events around ``calls`` calls after 5 warm-ups)."""
    for _ in range(5):
        call()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        call()
    end.record()
    torch.cuda.synchronize()
    return 1e3 * start.elapsed_time(end) / calls


def cast_compiled_on(rows: int, width: int) -> Callable[..., torch.Tensor]:
    """The fp8 input cast compiled afresh (dynamic shapes) on a (rows, width) first input."""
    torch._dynamo.reset()
    compiled = torch.compile(_to_fp8, dynamic=True)
    # no cache: Inductor would otherwise hand back the kernel an earlier compile (the model cases')
    # generated for the same graph, whatever its first input's size
    with torch._inductor.config.patch(fx_graph_cache=False):
        compiled(torch.ones(rows, width, device="cuda", dtype=torch.bfloat16), torch.ones((), device="cuda"))
    return compiled


def cast_lines() -> list[str]:
    """The fp8 cast of a BERT-base batch of 256 (32768 x 768): eager, and compiled on a tiny and
    on a layer-sized first input (Inductor sizes a dynamic kernel's blocks from its first input)."""
    x = torch.randn(32768, 768, device="cuda", dtype=torch.bfloat16)
    scale = torch.full((), 0.02, device="cuda")
    timings = {"eager (3 kernels)": per_call_us(lambda: _to_fp8(x, scale))}
    for rows, width in ((2, 16), (EXAMPLE_ROWS, EXAMPLE_WIDTH)):
        cast = cast_compiled_on(rows, width)
        timings[f"compiled on ({rows}, {width})"] = per_call_us(lambda: cast(x, scale))
    moved_bytes = x.numel() * (x.element_size() + 1)  # bf16 read, fp8 written
    return [
        f"## The fp8 input cast, 32768 x 768 bf16 rows ({moved_bytes / 1e6:.0f} MB moved per call)",
        "",
        *(
            f"- {label}: {us:.1f} us per call ({moved_bytes / us / 1e3:.0f} GB/s)"
            for label, us in timings.items()
        ),
        "",
    ]


def attention_lines() -> list[str]:
    """ViT-B/16's attention at batch 32 (12 heads, 197 tokens, 64 wide) per SDPA backend, eager and
    replayed from a CUDA graph: which backend a captured call gets, and what it costs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qkv = torch.randn(32, 197, 3, 12, 64, device="cuda", dtype=torch.bfloat16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # strided, as a fused projection gives
    lines = ["## ViT-B/16 attention, batch 32, per SDPA backend (us per call)", ""]
    default_choice = SDPBackend(torch._fused_sdp_choice(q, k, v)).name
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side), torch.inference_mode():
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph), torch.inference_mode():
        captured_choice = SDPBackend(torch._fused_sdp_choice(q, k, v)).name
    lines.append(f"- backend chosen: eager {default_choice}, while capturing {captured_choice}")
    backends = {
        "default": [b for b in SDPBackend.__members__.values() if b.name != "ERROR"],
        "flash": [SDPBackend.FLASH_ATTENTION],
        "efficient": [SDPBackend.EFFICIENT_ATTENTION],
        "cudnn": [SDPBackend.CUDNN_ATTENTION],
        "math": [SDPBackend.MATH],
    }
    for label, allowed in backends.items():
        try:
            with sdpa_kernel(allowed), torch.inference_mode():
                attend = CudaGraphed(
                    FunctionModule(lambda x: torch.nn.functional.scaled_dot_product_attention(x, k, v))
                )
                eager_us = per_call_us(lambda: attend.module(q))
                graph_us = per_call_us(lambda: attend(q))
            lines.append(f"- {label}: eager {eager_us:.1f}, graph {graph_us:.1f}")
        except RuntimeError as error:
            lines.append(f"- {label}: refused ({str(error).splitlines()[0][:160]})")
    return [*lines, ""]


def hf_capture_lines() -> list[str]:
    """Which SDPA backend transformers' attention gets at batch 32, eager and while a CUDA graph
    records it, and the mask transformers passes: ViT-B/16 (no padding) and BERT-base with half
    its tokens padding, through the padding mask the zoo's text models pass. transformers 5.17
    builds a full boolean mask whenever a stream is capturing (it cannot look at the padding mask
    there), and ViT-B/16's graph then held PyTorch's float32 math attention."""
    import transformers
    from torch.nn import functional
    from torch.nn.attention import SDPBackend

    vit_model, pixels = vit(32)
    vit_model = vit_model.to("cuda", torch.bfloat16)
    bert_model = bert(32)[0].to("cuda", torch.bfloat16)
    ids = torch.randint(1000, 20000, (32, 128), device="cuda")
    ids[:, 64:] = 0  # padding
    models = {
        "ViT-B/16": (FirstOutput(vit_model), pixels()),
        "BERT-base, half padding": (
            FunctionModule(lambda x: bert_model(x, attention_mask=(x != 0).long())[0]),
            ids,
        ),
    }
    attend = functional.scaled_dot_product_attention
    lines = [
        f"## transformers {transformers.__version__}: the attention backend at batch 32, eager and recorded",
        "",
    ]
    for label, (model, x) in models.items():
        seen: dict[bool, str] = {}

        def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):  # type: ignore[no-untyped-def]
            capturing = torch.cuda.is_current_stream_capturing()
            if capturing not in seen:
                choice = torch._fused_sdp_choice(
                    q, k, v, attn_mask, dropout_p, is_causal, scale=scale, **kwargs
                )
                mask = "none" if attn_mask is None else f"{attn_mask.dtype} {tuple(attn_mask.shape)}"
                seen[capturing] = f"{SDPBackend(choice).name}, mask {mask}"
            return attend(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kwargs
            )

        functional.scaled_dot_product_attention = spy
        try:
            with torch.inference_mode():
                CudaGraphed(model)(x)  # its warm-up calls run eagerly, then it records
        finally:
            functional.scaled_dot_product_attention = attend
        lines += [
            f"- {label} eager: {seen.get(False, 'not called')}",
            f"- {label} while capturing: {seen.get(True, 'not called')}",
        ]
    return [*lines, ""]


def compiled_attention_lines(device: str = "cuda") -> list[str]:
    """Which attention a whole-model compile of ViT-B/16 (two of its layers, bf16, batch 32) keeps:
    the fourth GPU study's compiled ViT-B/16 and BERT-base ran float32 ``bmm`` and softmax kernels
    where eager runs cuDNN's fused attention. Per allowed SDPA backend set, and with PyTorch's
    math attention allowed to reduce in bf16, the attention ops Inductor's generated code calls
    and the compiled forward's time against eager's."""
    import re

    from torch._inductor.utils import run_and_get_code
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import ViTConfig, ViTModel

    model = FirstOutput(ViTModel(ViTConfig(num_hidden_layers=2), add_pooling_layer=False)).eval()
    model = model.to(device, torch.bfloat16)
    pixels = torch.randn(32, 3, 224, 224, device=device, dtype=torch.bfloat16)
    every = [b for b in SDPBackend.__members__.values() if b.name != "ERROR"]
    settings: dict[str, tuple[list[SDPBackend], bool, bool]] = {  # backends, bf16 math, dynamic
        "default backends": (every, False, False),
        "default backends, dynamic shapes (as pt_bf16_compile)": (every, False, True),
        "flash only": ([SDPBackend.FLASH_ATTENTION], False, False),
        "efficient only": ([SDPBackend.EFFICIENT_ATTENTION], False, False),
        "cudnn only": ([SDPBackend.CUDNN_ATTENTION], False, False),
        "default backends, math may reduce in bf16": (every, True, False),
    }
    lines = ["## ViT-B/16 (2 layers) compiled whole, batch 32: the attention Inductor keeps", ""]
    with torch.inference_mode():
        eager_us = 1e6 * timed(lambda: model(pixels))
    lines.append(f"- eager: {eager_us:.0f} us per forward")
    allow_bf16_math = torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp
    was_allowed = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
    for label, (backends, bf16_math, dynamic) in settings.items():
        allow_bf16_math(bf16_math)
        try:
            with sdpa_kernel(backends), torch.inference_mode():
                compiled = as_compiled(dynamic)(model)
                _, codes = run_and_get_code(compiled, pixels)
                compiled_us = 1e6 * timed(lambda: compiled(pixels))
            calls = sorted(set(re.findall(r"(?:aten\.|extern_kernels\.)\w*(?:attention|bmm)\w*", "\n".join(codes))))
            lines.append(
                f"- {label}: {compiled_us:.0f} us per forward ({compiled_us / eager_us:.2f}x eager); "
                f"calls {', '.join(calls) or 'none'}"
            )
        except Exception as error:  # a refused backend or a failed compile is the finding
            lines.append(f"- {label}: failed ({type(error).__name__}: {str(error).splitlines()[0][:160]})")
        finally:
            allow_bf16_math(was_allowed)
        print(lines[-1], flush=True)
    return [*lines, ""]


class FunctionModule(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--attention-only", action="store_true", help="only the attention sections")
    parser.add_argument(
        "--compiled-attention", action="store_true", help="only the compiled-attention section"
    )
    parser.add_argument(
        "--match",
        default="",
        help='only the model cases whose "model variant" holds this text, no other section',
    )
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name()
    name = "gpu_kernels_" + "".join(c if c.isalnum() else "_" for c in gpu.lower()).strip("_")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Where GPU variants spend their time: {gpu}",
        "",
        f"torch {torch.__version__}; `source scripts/gpu_setup.sh && python3 {shlex.join(sys.argv)}`",
        "",
    ]
    cases = [
        ("bert_base", bert, 256, "fp8", as_fp8),
        ("bert_base", bert, 256, "fp8 compiled whole", as_fp8_compiled),
        ("bert_base", bert, 32, "fp8", as_fp8),
        ("vit_b16", vit, 32, "cuda graph", None),
        ("vit_b16", vit, 256, "cuda graph", None),
        ("bert_base", bert, 32, "cuda graph", None),
        ("vit_b16", vit, 32, "bf16 compiled whole (dynamic shapes)", as_compiled(True)),
        ("vit_b16", vit, 32, "bf16 compiled whole (static shapes)", as_compiled(False)),
        ("bert_base", bert, 32, "bf16 compiled whole (dynamic shapes)", as_compiled(True)),
    ]
    chosen = [case for case in cases if args.match in f"{case[0]} {case[3]}"]
    for model_id, build, batch, variant, convert in [] if args.attention_only or args.compiled_attention else chosen:
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
    # last: a capture a backend refuses may leave the stream unusable for what would follow
    sections = (cast_lines, hf_capture_lines, attention_lines)
    if args.compiled_attention:
        sections = (compiled_attention_lines,)
    elif args.attention_only:
        sections = (hf_capture_lines, attention_lines)
    elif args.match:
        sections = ()
    for section in sections:
        lines += section()
        print("\n".join(lines[-8:]), flush=True)
        (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

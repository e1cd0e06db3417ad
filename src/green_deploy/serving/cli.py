"""``python -m green_deploy.serving``: serve one variant folder on loopback.

    python -m green_deploy.serving --variant-dir data/06_models/optimized/mnist_vit/pt_fp16 \\
        --runtime pytorch --input-example sample.npy --port 8080

The input spec comes from ``--input-example`` (an encoded batch saved with ``numpy.save``; its
dtype and item shape) or from ``--input-shape`` and ``--input-dtype``. ``--port 0`` picks a
free port; the URL is logged once the server listens and, with ``--ready-file``, written there
as JSON (``url``, ``pid``, ``model``, ``runtime``, ``variant_dir``) and removed at a clean exit.
SIGTERM or Ctrl-C stops it gracefully: requests in flight finish, the energy monitor is closed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import uvicorn

from green_deploy.errors import ConfigError
from green_deploy.runtimes import DEVICES, RUNTIMES
from green_deploy.runtimes.keras import KERAS_MODES
from green_deploy.serving.app import ServingLimits, create_app
from green_deploy.serving.http import JsonErrorHttpToolsProtocol
from green_deploy.serving.model import InputSpec, load_served_model

logger = logging.getLogger("green_deploy.serving")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m green_deploy.serving", description="Serve one optimized variant over HTTP, metered."
    )
    parser.add_argument(
        "--variant-dir", type=Path, required=True, help="a folder the optimize pipeline wrote"
    )
    parser.add_argument("--runtime", choices=RUNTIMES, required=True)
    parser.add_argument("--name", help="the model name in routes and responses (default: the folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    spec = parser.add_argument_group("input spec (one of)")
    spec.add_argument("--input-example", type=Path, help=".npy of an encoded batch: its dtype and item shape")
    spec.add_argument("--input-shape", help="one item's shape without the batch axis, e.g. 1,28,28")
    spec.add_argument("--input-dtype", help="e.g. float32 (images) or int64 (token ids)")
    limits = parser.add_argument_group("limits")
    defaults = ServingLimits()
    limits.add_argument("--max-items", type=int, default=defaults.max_items, help="items per request")
    limits.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    limits.add_argument(
        "--max-queue", type=int, default=defaults.max_queue, help="waiting requests before 503"
    )
    limits.add_argument(
        "--max-batch-items", type=int, default=0, help="micro-batch waiting requests up to N items (0: off)"
    )
    parser.add_argument("--threads", type=int, help="intra-op threads (PyTorch, ONNX Runtime, TFLite)")
    parser.add_argument(
        "--device", choices=DEVICES, default="cpu", help="where the model runs (cuda: PyTorch only)"
    )
    parser.add_argument(
        "--keras-mode",
        choices=KERAS_MODES,
        default="graph",
        help="a Keras model as a traced tf.function graph (default; checked against eager on the "
        "warm-up call), that graph compiled by XLA, or called eagerly",
    )
    parser.add_argument(
        "--warmup-input",
        type=Path,
        help=".npy of real input items for the warm-up call (default: one all-zeros item)",
    )
    parser.add_argument("--idle-seconds", type=float, default=0.0, help="measure idle power first (0: skip)")
    parser.add_argument("--no-gpu-energy", action="store_true", help="do not open NVML")
    parser.add_argument(
        "--no-energy",
        action="store_true",
        help="open no energy source (to measure what metering itself costs)",
    )
    parser.add_argument("--ready-file", type=Path, help="write url/pid here once listening")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs latency)")
    return parser


def input_spec_from_args(args: argparse.Namespace) -> InputSpec:
    if args.input_example is not None:
        if args.input_shape or args.input_dtype:
            raise SystemExit("give --input-example or --input-shape/--input-dtype, not both")
        return InputSpec.from_example(np.load(args.input_example, allow_pickle=False))
    if not (args.input_shape and args.input_dtype):
        raise SystemExit(
            "the input spec is needed: --input-example FILE.npy (an encoded batch), or --input-shape "
            "and --input-dtype (e.g. --input-shape 1,28,28 --input-dtype float32 for the zoo's images)"
        )
    try:
        return InputSpec.parse(args.input_dtype, args.input_shape)
    except (TypeError, ConfigError) as error:
        raise SystemExit(f"bad input spec: {error}") from error


def _warmup_example(path: Path | None, spec: InputSpec) -> np.ndarray | None:
    if path is None:
        return None
    example = np.load(path, allow_pickle=False)
    if example.ndim < 1 or tuple(example.shape[1:]) != spec.shape or example.dtype != spec.numpy_dtype:
        raise SystemExit(
            f"--warmup-input {path} holds {example.dtype} {example.shape}; the input is {spec.describe()}"
        )
    return example


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from green_deploy.energy import EnergyMonitor, discover_sources

    spec = input_spec_from_args(args)
    limits = ServingLimits(args.max_items, args.max_body_bytes, args.max_queue, args.max_batch_items)
    served = load_served_model(
        args.variant_dir, args.runtime, spec, args.name, args.threads, args.device, args.keras_mode
    )
    # a server's request windows are far shorter than the GPU counter's steps (the harness reads
    # the counter around whole repetitions): no polling thread beside the serving one
    sources = [] if args.no_energy else discover_sources(gpu=not args.no_gpu_energy, edge_corrected=False)
    monitor = EnergyMonitor(sources)
    if args.idle_seconds > 0:
        monitor.measure_idle(args.idle_seconds)
    app = create_app(served, monitor, limits, warmup_example=_warmup_example(args.warmup_input, spec))
    config = uvicorn.Config(
        app,
        http=JsonErrorHttpToolsProtocol,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level,
        access_log=args.access_log,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    info = {"model": served.name, "runtime": served.runtime, "variant_dir": str(args.variant_dir)}
    server = _Server(config, args.ready_file, info)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # that was installed before it; this one ends the process normally (exit 0 = a clean stop).
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _after_graceful_stop)
    try:
        server.run()
    finally:
        if args.ready_file is not None and server.ready_written:
            args.ready_file.unlink(missing_ok=True)
    return 0 if server.started else 3


def _after_graceful_stop(signum: int, frame: object) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)


class _Server(uvicorn.Server):
    """uvicorn's server, which also logs the real URL (``--port 0``) and writes the ready file."""

    def __init__(self, config: uvicorn.Config, ready_file: Path | None, info: dict[str, str]):
        super().__init__(config)
        self.ready_file = ready_file
        self.info = info
        self.ready_written = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        logger.info("serving %s at %s (pid %d)", self.info["model"], url, os.getpid())
        if self.ready_file is not None:
            temporary = self.ready_file.with_name(self.ready_file.name + ".tmp")
            temporary.write_text(json.dumps({"url": url, "pid": os.getpid(), **self.info}))
            temporary.replace(self.ready_file)
            self.ready_written = True

"""Exporting a PyTorch model to ONNX for the ``onnx`` technique.

The exporter is ``torch.onnx.export(dynamo=True)`` (``torch.export`` graph translated by
onnxscript); ``green_deploy.optimize.techniques.onnx_runtime`` says why. The graph it writes is run
and counted by ``green_deploy.runtimes.onnxruntime``. torch is imported inside the functions.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import numpy as np

from green_deploy.errors import GreenDeployError
from green_deploy.runtimes.onnxruntime import INPUT_NAME, OUTPUT_NAME

_EXPORT_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = "## Exception summary"
_CLASS_PREFIX = re.compile(r"<class '(?:[\w.]*\.)?(?P<name>\w+)'>: (?P<message>.*)")


class ExportError(GreenDeployError):
    """``torch.onnx.export`` could not turn the module into an ONNX graph; the message says why."""


def export_onnx(model: Any, example: np.ndarray, opset: int | None = None) -> bytes:
    """The ONNX bytes of ``model`` (an ``nn.Module`` in eval mode) traced on ``example``.

    The batch axis is dynamic (any number of rows runs); the other axes keep the example's
    sizes, as the zoo's inputs do. The graph is exported with ``dynamo=True`` and the exporter's
    own graph optimisation (constant folding, dead-code removal). Per-node debug metadata (the
    PyTorch stack and FX node each op came from) is dropped: it is a quarter to a third of a
    small model's file and no runtime reads it.

    Args:
        model: the module; it is not modified.
        example: a batch in the PyTorch layout as the zoo gives it (NCHW floats or int64 ids);
            a single row is repeated, since ``torch.export`` specialises a batch of one.
        opset: the ai.onnx opset; ``None`` takes the exporter's default.

    Raises:
        ExportError: the exporter failed; its message is the first meaningful line.
    """
    import torch

    example = np.asarray(example)
    if len(example) == 0:
        raise ValueError("export_onnx needs at least one example row")
    if len(example) == 1:
        example = np.concatenate([example, example])
    batch = torch.export.Dim("batch")
    # Per-op chatter at WARNING: "torchvision is not installed. Skipping torchvision::nms",
    # "Skipping constant folding for op SequenceEmpty", "Skipped deduplication of initializer".
    quieted = {name: logging.getLogger(name) for name in _EXPORT_LOGGERS}
    levels = {name: log.level for name, log in quieted.items()}
    for log in quieted.values():
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter from torch.export internals
            program = torch.onnx.export(
                model.eval(),
                (torch.as_tensor(example),),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except Exception as error:  # the exporter wraps torch.export / translation errors in many types
        raise ExportError(first_line(error)) from error
    finally:
        for name, log in quieted.items():
            log.setLevel(levels[name])
    proto = program.model_proto  # type: ignore[union-attr]  # dynamo=True returns an ONNXProgram; torch has no overload
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return proto.SerializeToString()


def first_line(error: BaseException) -> str:
    """An error's key message: the exporter's "Exception summary" (it opens with steps to report
    a bug), else the first non-empty line; ``<class 'x.Y'>: msg`` becomes ``Y: msg``."""
    text = _ANSI_ESCAPE.sub("", str(error))
    if _SUMMARY in text:
        text = text.split(_SUMMARY, 1)[1]
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line:
            match = _CLASS_PREFIX.match(line)
            return f"{match['name']}: {match['message']}" if match else line
    return type(error).__name__

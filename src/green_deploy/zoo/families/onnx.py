"""A user's own ONNX graph (a ``.onnx`` file), used as it is.

The graph is the ONNX baseline, served by ONNX Runtime; ONNX Runtime's own quantization (dynamic
and static int8, ``technique: onnx`` with framework ``onnx``) applies to it, PyTorch and
TensorFlow techniques do not. It must take one input, the batch (its first dimension symbolic,
e.g. exported with a dynamic batch axis), and give one output, the logits. It reads images
(float32 NCHW in [0, 1]) or, with ``tokenizer``, texts as token ids (cast to the graph input's
integer type). ``training.mode`` is ``none``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from green_deploy.errors import ArtifactError, ConfigError, ModelNotFoundError
from green_deploy.zoo.families.own_inputs import OwnFileFamily

logger = logging.getLogger(__name__)

NAME = "onnx"


def read_user_onnx(path: Path) -> bytes:
    """The ONNX graph in ``path`` as one self-contained model (weights that an exporter wrote to
    external data files beside it are read in), checked to be one the study can feed batches to.
    Protobuf caps one serialized model at 2 GB; a larger graph is refused when it is read."""
    if not path.is_file():
        raise ModelNotFoundError(
            f"ONNX model {path.resolve()} does not exist; set architecture.path to a file written by "
            "torch.onnx.export(..., dynamic_axes / dynamic_shapes for the batch) or another exporter"
        )
    import onnx

    try:
        model = onnx.load(str(path))  # with its external data files (torch.onnx's default), if any
        data = model.SerializeToString()
    except Exception as error:  # protobuf's DecodeError, a missing external data file, a graph over 2 GB
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"{path} is not a readable ONNX model ({reason})") from error
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ConfigError(
            f"{path}: the graph must take one input (the batch) and give one output (the logits); it takes "
            f"{[value.name for value in inputs]} and gives {[value.name for value in graph.output]}"
        )
    return data


def external_data_files(path: Path) -> list[Path]:
    """The external data files a graph's tensors name (torch.onnx writes ``<name>.onnx.data``)."""
    if not path.is_file():
        return []
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # a damaged file: the build names it when it reads the graph
        return []
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [path.parent / location for location in sorted(locations)]


class OnnxFamily(OwnFileFamily):
    """An ONNX graph used as it is: an ONNX baseline with no framework model, no training."""

    name = NAME
    frameworks = ("onnx",)
    describes = "the ONNX model"

    def source_paths(self, arch: Mapping[str, Any]) -> list[Path]:
        """The files a build reads, with the external data files the graph names."""
        paths = self.settings(arch).source_paths()
        return [*paths, *external_data_files(paths[0])]

    def build_onnx(self, arch: Mapping[str, Any], n_outputs: int) -> bytes:
        s = self.settings(arch)
        data = read_user_onnx(Path(s.path).expanduser())
        logger.info("%s: an ONNX graph of %d bytes, %d classes", s.path, len(data), n_outputs)
        return data


FAMILY = OnnxFamily()

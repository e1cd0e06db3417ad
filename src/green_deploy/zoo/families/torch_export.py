"""A user's own exported PyTorch program (``torch.export.save``, a ``.pt2`` file), used as it is.

The program is loaded with ``torch.export.load`` and run as the module it unlifts to; its weights
are saved and reloaded through safetensors as every PyTorch model here is. It reads images (the
zoo's layout: float32 NCHW in [0, 1]) or, with ``tokenizer`` naming a Hugging Face folder, texts
as token ids. Its outputs are its logits: their width must equal the dataset's classes, and the
batch dimension must have been exported dynamic (``torch.export.Dim``), since the study feeds
batches of many sizes. Exported programs carry no training graph: ``training.mode`` is ``none``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from green_deploy.errors import ArtifactError, ConfigError, ModelNotFoundError
from green_deploy.zoo.families.own_inputs import OwnFileFamily

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

NAME = "torch_export"


@functools.cache
def _program(path: Path) -> Any:
    """The exported program in ``path``, loaded once per process."""
    import torch

    if not path.is_file():
        raise ModelNotFoundError(
            f"exported program {path.resolve()} does not exist; set architecture.path to a file written by "
            "torch.export.save(torch.export.export(model, example, dynamic_shapes=...), path)"
        )
    try:
        return torch.export.load(str(path))
    except Exception as error:  # a damaged archive raises zipfile, pickle or runtime errors
        raise ArtifactError(f"{path} is not a readable torch.export program ({error})") from error


class TorchExportFamily(OwnFileFamily):
    """An exported PyTorch program, used as it is (no twin, no training)."""

    name = NAME
    frameworks = ("torch",)
    describes = "the exported program"

    def build_torch(self, arch: Mapping[str, Any], n_outputs: int) -> torch.nn.Module:
        """The program's module, checked on two example rows: it takes a batch of another size than
        it was exported with, and gives ``n_outputs`` logits per row."""
        s = self.settings(arch)
        program = _program(Path(s.path).expanduser())
        import torch

        from green_deploy.zoo.families.torch_models import ExportedProgramModule

        module = ExportedProgramModule(program.module())
        args, _ = program.example_inputs
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            raise ConfigError(
                f"{s.path}: the program must take one tensor (the batch); it takes {len(args)} inputs"
            )
        example = args[0][:1].expand(2, *args[0].shape[1:]).clone()
        try:
            with torch.inference_mode():
                outputs = module(example)
        except Exception as error:
            raise ConfigError(
                f"{s.path} does not take a batch of 2 ({str(error).splitlines()[0][:200]}); export it with a dynamic "
                'batch dimension: dynamic_shapes=({0: torch.export.Dim("batch")},)'
            ) from error
        if not isinstance(outputs, torch.Tensor) or outputs.shape != (2, n_outputs):
            shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
            raise ConfigError(
                f"{s.path} gives outputs of shape {shape} for 2 rows, but the dataset has {n_outputs} classes: the "
                f"program must return logits of shape (batch, {n_outputs})"
            )
        logger.info("%s: an exported program, %d classes", s.path, n_outputs)
        return module


FAMILY = TorchExportFamily()

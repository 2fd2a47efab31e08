"""Save a backbone as a Hugging Face directory (config.json + model.safetensors) or official .pth."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from dinobench.backbones.variants import FAMILIES
from dinobench.errors import DinobenchError
from dinobench.utils.io import write_atomic, write_folder_atomic


def _family_module(model: nn.Module):
    for _, module_name in FAMILIES.values():
        if type(model).__module__ == module_name:
            return importlib.import_module(module_name)
    raise DinobenchError(f"cannot export {type(model).__name__}: only first-party families have an HF layout")


def export_hf(model: nn.Module, out_dir: str | Path) -> Path:
    """Write ``out_dir/config.json`` and ``out_dir/model.safetensors`` (transformers-loadable).

    The folder is assembled under a temporary name and renamed into place.
    """
    config, state = _family_module(model).export_hf(model)
    config = {**config, "torch_dtype": str(next(model.parameters()).dtype).replace("torch.", "")}

    def fill(staging: Path) -> None:
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"),
                  metadata={"format": "pt"})

    return write_folder_atomic(Path(out_dir), fill)


def export_pth(model: nn.Module, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the official-format state dict (``torch.save``), atomically; ``state``: ``model``'s state
    dict when already gathered (e.g. from FSDP2 shards), else ``model.state_dict()``."""
    state = model.state_dict() if state is None else state
    return write_atomic(Path(path), lambda fh: torch.save(state, fh))

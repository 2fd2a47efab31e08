"""The one reader of tensor files (weights, training and head checkpoints, cached embeddings).

``.safetensors`` through the safetensors package, everything else through ``torch.load(weights_only=True)``
(memory-mapped when the file is in the zip format): a pickle that names any global outside torch's tensor
allow-list is refused before anything runs. Every way a file can be unreadable (truncated, a foreign
format, a malicious pickle) is one :class:`~dinobench.errors.WeightsError` line naming the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from dinobench.errors import WeightsError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refusal(exc: BaseException) -> str:
    """The line of torch's weights-only refusal that names what was refused (e.g. ``GLOBAL posix.system``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or [type(exc).__name__])[0].rstrip(".")[:200]


def load_tensor_file(path: str | Path, what: str = "checkpoint", mmap: bool = True) -> Any:
    """What the file at ``path`` holds (tensors, plain containers of tensors and numbers); an unreadable or
    refused file is one WeightsError line (``what`` names the kind of file in it)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors {what} (truncated?): {_first_line(exc)}") from exc
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:  # weights_only refused a global: a pickle that would run code
        raise WeightsError(f"{path}: refused to load this {what}: it pickles Python objects other than tensors "
                           f"and plain containers ({_refusal(exc)}); nothing in it was run") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            TypeError, IndexError) as exc:
        raise WeightsError(f"{path}: not a readable {what} (truncated or wrong format?): {_first_line(exc)}") from exc

"""On-disk cache of class-prompt text embeddings (like the image-feature cache): encoding 1000 classes x 80
templates with a large text tower is the slow part of a zero-shot run and does not depend on the images.

Key: the dino.txt checkpoint's sha256, its sizes, the templates, the class names and which embedding (full or
the patch half) - everything that changes the tensor. Stored as ``<cache>/text/<key>.pt`` (``torch.save``,
read back with ``weights_only=True``), written atomically; ``features.cache=false`` turns it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from dinobench.errors import WeightsError
from dinobench.features.keys import cache_root
from dinobench.utils.hashing import payload_sha256
from dinobench.utils.io import write_atomic
from dinobench.utils.tensor_files import load_tensor_file


def cached_embeddings(ctx: Any, payload: dict[str, Any], compute: Callable[[], Tensor]) -> Tensor:
    """``compute()`` once per ``payload`` on disk (when the task's feature cache is on and the checkpoint has a
    sha256); ``ctx.timings["text_embeddings_cached"]`` says whether it came from the cache."""
    fcfg = ctx.features_config
    sha = payload.get("head_sha256")
    if not fcfg.cache or not sha:
        ctx.timings["text_embeddings_cached"] = 0.0
        return compute()
    path = Path(cache_root({"cache_dir": fcfg.cache_dir})) / "text" / f"{payload_sha256(payload, 32)}.pt"
    if path.is_file():
        try:
            value = load_tensor_file(path, "cached text embedding", mmap=False)
        except WeightsError:  # a damaged (or planted) entry is recomputed
            value = None
        if isinstance(value, Tensor):
            ctx.timings["text_embeddings_cached"] = 1.0
            return value
        path.unlink(missing_ok=True)
    value = compute().detach().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda fh: torch.save(value, fh))
    ctx.timings["text_embeddings_cached"] = 0.0
    return value

"""First-party backbones and the ``create_backbone`` entry point.

One family per file (``dinov3_vit.py``, ...); variants are data in ``variants.py`` (torch-free,
so listing stays fast). The plugin :mod:`dinobench.plugins.backbones` registers them;
``create_backbone`` looks names up in the registry, so third-party backbones work the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def create_backbone(name: str, weights: str | Path | None = None, strict: bool = True,
                    **overrides: Any) -> "nn.Module":
    """Build backbone ``name`` (see :func:`dinobench.backbones.factory.create_backbone`)."""
    from dinobench.backbones.factory import create_backbone as _create

    return _create(name, weights=weights, strict=strict, **overrides)

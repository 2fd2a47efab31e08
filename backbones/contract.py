"""What every backbone offers the rest of dinobench, in one place (see ``docs`` in the README).

Attributes ``embed_dim``, ``patch_size``, ``n_storage_tokens``, ``n_blocks``; methods
``forward_features`` and ``get_intermediate_layers`` with official DINOv3 semantics; optional
``image_mean``/``image_std`` (the input normalisation it was trained with).
"""

from __future__ import annotations

from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def backbone_normalisation(model: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's input ``(mean, std)`` (``image_mean``/``image_std``; ImageNet's when it has none)."""
    return (tuple(getattr(model, "image_mean", IMAGENET_MEAN)), tuple(getattr(model, "image_std", IMAGENET_STD)))

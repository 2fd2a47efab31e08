"""The built-in feature kinds (registered by :mod:`dinobench.plugins.feature_kinds`).

A kind is ``compute(model, images) -> Tensor [B, *shape]``; it may also say how to make it from
another cached kind without a forward (``cut_from``: ``plan(model, source_shape) -> FeatureCut``).

- ``cls``: the normalised CLS token ``x_norm_clstoken`` ``[D]`` (kNN, logistic regression);
- ``cls4_avgpool``: ``[5D]`` = normalised CLS tokens of the last 4 blocks (oldest first) then the mean
  of the last block's normalised patch tokens, the official linear-probe input; its last ``2D``
  columns are the ``n=1`` input ``[cls_L, avgpool_L]``;
- ``patch_tokens``: the last block's normalised patch tokens ``[h, w, D]`` (channels-last).

``cls`` is cut from a cached ``cls4_avgpool`` entry (columns ``[W - 2D, W - D)``: the last block's CLS,
bit-identical to ``x_norm_clstoken`` by the backbone contract), so kNN and logreg after the linear probe
do no forward. The reverse is impossible (``cls`` lacks three blocks and the pooled patches). Extracting
``cls4_avgpool`` for every ``cls`` request would avoid that pass but costs 5x the disk (ImageNet train,
ViT-7B: 105 GB instead of 21 GB) and needs >= 4 blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class FeatureCut:
    """How to make a kind from rows of a cached source entry: ``apply(rows [b, *source_shape]) ->
    [b, *shape]``, applied a block of rows at a time; ``info`` (JSON-able) goes into the manifest."""

    apply: Callable[[np.ndarray], np.ndarray]
    shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)


def cls_token(model: nn.Module, images: Tensor) -> Tensor:
    """``[B, D]``: the normalised CLS token."""
    return model.forward_features(images)["x_norm_clstoken"]


def cls4_avgpool(model: nn.Module, images: Tensor) -> Tensor:
    """``[B, 5D]``: CLS tokens of the last 4 blocks, then the last block's mean patch token."""
    layers = model.get_intermediate_layers(images, n=4, return_class_token=True, norm=True)
    patch_last = layers[-1][0]
    return torch.cat([cls for _, cls in layers] + [patch_last.mean(dim=1)], dim=-1)


def patch_tokens(model: nn.Module, images: Tensor) -> Tensor:
    """``[B, h, w, D]``: the last block's normalised patch tokens, channels-last."""
    (patches,) = model.get_intermediate_layers(images, n=1, reshape=True, norm=True)
    return patches.permute(0, 2, 3, 1).contiguous()


def _columns(start: int, stop: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rows: rows[:, start:stop]


def cut_cls_from_cls4_avgpool(model: nn.Module, source_shape: tuple[int, ...]) -> FeatureCut:
    """``cls`` = columns ``[W - 2D, W - D)`` of ``cls4_avgpool`` ``[W]`` (``D``: the last block's width,
    ``embed_dim`` for ViTs and ConvNeXts alike); ValueError when the source cannot hold it."""
    embed_dim = int(getattr(model, "embed_dim", 0))
    if len(source_shape) != 1 or not 0 < 2 * embed_dim <= source_shape[0]:
        raise ValueError(f"a cls4_avgpool feature of shape {list(source_shape)} holds no {embed_dim}-wide "
                         f"last-block CLS")
    width = source_shape[0]
    start, stop = width - 2 * embed_dim, width - embed_dim
    return FeatureCut(_columns(start, stop), (embed_dim,), {"columns": [start, stop]})


#: scales of the multi-scale global descriptor (the revisited-retrieval convention)
MULTISCALE_SCALES = (1.0, 2 ** -0.5, 2 ** 0.5)


def cls_multiscale(model: nn.Module, images: Tensor) -> Tensor:
    """``[B, D]``: mean of the L2-normalised CLS tokens of the images resized by 1, 1/sqrt(2) and sqrt(2)
    (bilinear), L2-normalised again; sizes are rounded to whole patches (at least one)."""
    height, width = images.shape[-2:]
    patch = int(getattr(model, "patch_size", 1) or 1)
    total = None
    for scale in MULTISCALE_SCALES:
        size = (max(patch, round(height * scale / patch) * patch), max(patch, round(width * scale / patch) * patch))
        resized = images if scale == 1.0 else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        cls = F.normalize(model.forward_features(resized)["x_norm_clstoken"].float(), dim=-1)
        total = cls if total is None else total + cls
    return F.normalize(total / len(MULTISCALE_SCALES), dim=-1)


def frame_patch_tokens(model: nn.Module, clips: Tensor) -> Tensor:
    """``[B, T, h, w, D]``: every frame's last-block normalised patch tokens, of clips ``[B, T, 3, H, W]``."""
    if clips.ndim != 5:
        raise ValueError(f"frame_patch_tokens needs clips [B, T, 3, H, W], got shape {list(clips.shape)}")
    batch, frames = clips.shape[:2]
    tokens = patch_tokens(model, clips.flatten(0, 1))
    return tokens.reshape(batch, frames, *tokens.shape[1:])

"""Linear segmentation head of the official DINOv3 ADE20K protocol (pure PyTorch).

Input: a list of backbone layers ``(patch_map [B, D_i, h, w], class_token [B, D_i])`` (the
official config uses the LAST layer only, with the backbone's final norm and without the class
token). Layers are resized to the first one's grid and concatenated (optionally each with its
class token broadcast), then ``Dropout2d(0.1) -> BatchNorm2d -> 1x1 conv`` gives class logits on
the patch grid; :meth:`LinearSegHead.forward` upsamples them bilinearly when given a ``size``.
The 1x1 conv starts from N(0, 0.01) weights and zero bias, as in the official head; the state-dict keys
(``batchnorm_layer.*``, ``conv.*``) are the official ``LinearHead``'s, so the ``segmentation_model.1.*`` entries of an
official ADE20K ``model_final.pth`` load strictly.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: what every dense head receives: one ``(patch_map, class_token)`` pair per backbone layer
LayerFeatures = Sequence[tuple[Tensor, Tensor]]


def concat_layers(features: LayerFeatures, use_cls_token: bool) -> Tensor:
    """Concatenate layers on the channel axis at the first layer's grid (bilinear resize),
    each optionally followed by its class token broadcast over the grid."""
    maps = []
    for patch_map, cls_token in features:
        if use_cls_token:
            patch_map = torch.cat([patch_map, cls_token[:, :, None, None].expand_as(patch_map)], dim=1)
        maps.append(patch_map)
    size = maps[0].shape[-2:]
    maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps]
    return torch.cat(maps, dim=1)


class LinearSegHead(nn.Module):
    """``[layers (+cls)] -> Dropout2d -> BatchNorm2d -> Conv1x1`` -> per-pixel class logits."""

    def __init__(self, in_channels: int | Sequence[int], num_classes: int, dropout: float = 0.1,
                 use_batchnorm: bool = True, use_cls_token: bool = False) -> None:
        super().__init__()
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        self.in_channels, self.num_classes, self.use_cls_token = in_channels, num_classes, use_cls_token
        channels = sum(in_channels) * (2 if use_cls_token else 1)
        self.channels = channels
        self.dropout = nn.Dropout2d(dropout)
        self.batchnorm_layer = nn.BatchNorm2d(channels) if use_batchnorm else nn.Identity()  # official key name
        self.conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features: LayerFeatures, size: tuple[int, int] | None = None) -> Tensor:
        """Logits ``[B, num_classes, h, w]`` on the patch grid, or upsampled to ``size``."""
        x = concat_layers(features, self.use_cls_token)
        logits = self.conv(self.batchnorm_layer(self.dropout(x)))
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


def segmentation_loss(logits: Tensor, labels: Tensor, ignore_index: int = 255) -> Tensor:
    """Official DINOv3 linear-seg loss: per-pixel cross-entropy averaged over *all* pixels
    (ignored ones count as 0, ``avg_non_ignore=False``); logits are resized to the labels."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index, reduction="none").mean()

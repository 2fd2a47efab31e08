"""Plain-DETR's input side: a frozen backbone read at several blocks (channels concatenated, optionally
LayerNorm-ed per block), optional windowed inference, and the normalised sine position encoding.

Module names follow the official ``build_backbone`` (``backbone.0.backbone.*`` for the ViT, or
``backbone.0._backbone.backbone.*`` under the window wrapper) so that official checkpoints load as they are.
Images travel as :class:`Padded` (a batch plus its padding mask, True on padded pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF


@dataclass
class Padded:
    """A zero-padded batch ``[B, C, H, W]`` and its mask ``[B, H, W]`` (True = padding)."""

    tensors: Tensor
    mask: Tensor

    @classmethod
    def from_images(cls, images: Sequence[Tensor]) -> "Padded":
        """Pad ``[C, H_i, W_i]`` images at the bottom/right to the largest height and width."""
        height = max(int(img.shape[1]) for img in images)
        width = max(int(img.shape[2]) for img in images)
        first = images[0]
        tensors = first.new_zeros((len(images), first.shape[0], height, width))
        mask = torch.ones((len(images), height, width), dtype=torch.bool, device=first.device)
        for i, img in enumerate(images):
            tensors[i, :, : img.shape[1], : img.shape[2]] = img
            mask[i, : img.shape[1], : img.shape[2]] = False
        return cls(tensors, mask)


def resize_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize of a ``[B, H, W]`` boolean mask."""
    return F.interpolate(mask[None].float(), size=tuple(size)).to(torch.bool)[0]


class LayerNorm2D(nn.Module):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (official name ``ln``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BlockFeatures(nn.Module):
    """The backbone's normed patch maps of ``layers`` concatenated along channels: ``[Padded]`` at stride
    ``patch_size`` with ``num_channels = [len(layers) * embed_dim]``. The backbone stays frozen."""

    def __init__(self, backbone: nn.Module, layers: int | Sequence[int], use_layernorm: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        for param in backbone.parameters():
            param.requires_grad_(False)
        self.patch_size = int(backbone.patch_size)
        self.strides = [self.patch_size]
        n_blocks = int(backbone.n_blocks)
        taken = range(n_blocks - layers, n_blocks) if isinstance(layers, int) else [int(i) for i in layers]
        dims = getattr(backbone, "embed_dims", [int(backbone.embed_dim)] * n_blocks)
        dims = [dims[i] for i in range(n_blocks) if i in taken]
        self.layers_to_use = layers if isinstance(layers, int) else list(taken)
        self.use_layernorm = use_layernorm
        if use_layernorm:
            self.layer_norms = nn.ModuleList([LayerNorm2D(d) for d in dims])
        self.num_channels = [sum(dims)]

    def forward(self, x: Padded) -> list[Padded]:  # noqa: D102
        maps = self.backbone.get_intermediate_layers(x.tensors, n=self.layers_to_use, reshape=True)
        if self.use_layernorm:
            maps = [ln(m).contiguous() for ln, m in zip(self.layer_norms, maps)]
        features = torch.cat(list(maps), dim=1)
        return [Padded(features, resize_mask(x.mask, features.shape[-2:]))]


class WindowedFeatures(nn.Module):
    """Features of an ``n x n`` grid of windows (sides multiples of the patch size; the last row/column takes
    the rest) stitched back together, stacked on the channels after the features of the whole image resized to
    one window (upsampled back): ``2 x`` the wrapped module's channels. The official high-resolution mode."""

    def __init__(self, inner: BlockFeatures, n_windows_w: int, n_windows_h: int, patch_size: int) -> None:
        super().__init__()
        self._backbone = inner
        self._n_windows_w, self._n_windows_h, self._patch_size = n_windows_w, n_windows_h, patch_size
        self.strides = inner.strides
        self.num_channels = [c * 2 for c in inner.num_channels]

    def _sides(self, total: int, n: int) -> tuple[int, list[int]]:
        side = math.ceil((total // n) / self._patch_size) * self._patch_size
        return side, [side] * (n - 1) + [total - side * (n - 1)]

    def forward(self, x: Padded) -> list[Padded]:  # noqa: D102
        height, width = x.tensors.shape[-2:]
        win_h, heights = self._sides(height, self._n_windows_h)
        win_w, widths = self._sides(width, self._n_windows_w)
        rows, top = [], 0
        for h in heights:
            row, left = [], 0
            for w in widths:
                window = Padded(x.tensors[..., top:top + h, left:left + w], x.mask[..., top:top + h, left:left + w])
                row.append(self._backbone(window)[0].tensors)
                left += w
            rows.append(torch.cat(row, dim=-1))
            top += h
        windows = torch.cat(rows, dim=-2)
        small = TF.resize(x.tensors, size=[win_h, win_w])
        whole = self._backbone(Padded(small, x.mask))[0].tensors  # the mask is not used by the backbone
        features = torch.cat([TF.resize(whole, size=list(windows.shape[-2:])), windows], dim=1)
        return [Padded(features, resize_mask(x.mask, features.shape[-2:]))]


class SinePositionEncoding(nn.Module):
    """DETR's 2-D sine encoding of the unpadded cumulative positions, normalised to ``2 pi``:
    ``[B, 2 * num_pos_feats, H, W]`` (y features first)."""

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0, normalize: bool = True) -> None:
        super().__init__()
        self.num_pos_feats, self.temperature, self.normalize = num_pos_feats, temperature, normalize
        self.scale = 2 * math.pi

    def forward(self, x: Padded) -> Tensor:  # noqa: D102
        not_mask = ~x.mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + 1e-6) * self.scale
            x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + 1e-6) * self.scale
        else:
            y_embed, x_embed = (y_embed - 0.5) * self.scale, (x_embed - 0.5) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x, pos_y = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class BackboneWithPosition(nn.Sequential):
    """``[features module, ModuleList of position encodings]`` (official ``backbone.0`` / ``backbone.1``);
    returns the feature levels and their encodings."""

    def __init__(self, features: nn.Module, position: nn.ModuleList) -> None:
        super().__init__(features, position)
        self.strides, self.num_channels = features.strides, features.num_channels

    def forward(self, x: Padded) -> tuple[list[Padded], list[Tensor]]:  # noqa: D102
        levels = list(self[0](x))
        return levels, [self[1][i](level).to(level.tensors.dtype) for i, level in enumerate(levels)]


def build_detr_backbone(backbone: nn.Module, *, layers: int | Sequence[int], use_layernorm: bool,
                        n_windows_sqrt: int, hidden_dim: int, num_feature_levels: int = 1,
                        position_embedding: str = "sine") -> BackboneWithPosition:
    """The official backbone stack around a frozen ``backbone``."""
    features: nn.Module = BlockFeatures(backbone, layers, use_layernorm)
    if n_windows_sqrt > 0:
        features = WindowedFeatures(features, n_windows_sqrt, n_windows_sqrt, features.patch_size)
    if position_embedding not in ("sine", "sine_unnorm"):
        raise ValueError(f"position_embedding={position_embedding!r}: only 'sine' and 'sine_unnorm' are supported")
    encoding = SinePositionEncoding(hidden_dim // 2, normalize=position_embedding == "sine")
    return BackboneWithPosition(features, nn.ModuleList([encoding for _ in range(num_feature_levels)]))

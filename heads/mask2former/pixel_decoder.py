"""Mask2Former's multi-scale deformable-attention pixel decoder, as the official DINOv3 segmentor configures it.

Inputs: the adapter's ``{"1": stride 4, "2": 8, "3": 16, "4": 32}`` maps. The stride-32/16/8 maps are
projected (1x1 conv + GroupNorm(32)) to ``conv_dim`` and refined jointly by a deformable-attention
transformer encoder (3 levels, sine position encoding + a learned level encoding, post-norm layers with a
ReLU FFN). A one-level FPN step adds the stride-4 map: ``relu(GN(conv3x3(GN(conv1x1(c1)) + up(enc_8))))``.
Returns the stride-4 *mask features* (1x1 conv to ``mask_dim``), and the three encoder maps (coarse to fine)
that the transformer decoder cross-attends to. Parameter names are the official ones.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.heads.mask2former.adapter import reference_points
from dinobench.heads.mask2former.deform_attn import MSDeformAttn


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "XavierFill" (= Kaiming-uniform with a=1), zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class Conv2d(nn.Conv2d):
    """A conv followed by an optional ``norm`` module and ``activation`` (detectron2's layout: ``.norm``)."""

    def __init__(self, *args: Any, norm: nn.Module | None = None, activation: Callable[[Tensor], Tensor] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.norm, self.activation = norm, activation

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


class PositionEmbeddingSine(nn.Module):
    """DETR's 2-D sine encoding of normalised (0, 2*pi] row/column positions: ``[B, 2*num_pos_feats, H, W]``."""

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000, normalize: bool = True) -> None:
        super().__init__()
        self.num_pos_feats, self.temperature, self.normalize = num_pos_feats, temperature, normalize
        self.scale = 2 * math.pi

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # noqa: D102
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        y = not_mask.cumsum(1, dtype=torch.float32)
        x_ = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y = y / (y[:, -1:, :] + 1e-6) * self.scale
            x_ = x_ / (x_[:, :, -1:] + 1e-6) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x, pos_y = x_[..., None] / dim_t, y[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class EncoderLayer(nn.Module):
    """Post-norm: deformable self-attention, then ReLU FFN (official ``MSDeformAttnTransformerEncoderLayer``)."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, refs: Tensor, shapes: Tensor) -> Tensor:  # noqa: D102
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, refs, src, shapes)))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class _LayerStack(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DeformableEncoder(nn.Module):
    """Encoder over the flattened levels (``encoder.layers.*``) with a learned ``level_encoding``."""

    def __init__(self, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float,
                 num_levels: int, n_points: int = 4) -> None:
        super().__init__()
        self.encoder = _LayerStack([EncoderLayer(d_model, dim_feedforward, dropout, num_levels, nhead, n_points)
                                    for _ in range(num_layers)])
        self.level_encoding = nn.Parameter(torch.empty(num_levels, d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_encoding)

    def forward(self, srcs: Sequence[Tensor], pos_embeds: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Encoded tokens ``[B, sum(h*w), C]`` and the level sizes."""
        sizes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_encoding[i].view(1, 1, -1)
                         for i, p in enumerate(pos_embeds)], 1)
        shapes = torch.as_tensor(sizes, dtype=torch.long, device=flat.device)
        refs = reference_points(sizes, flat.device).expand(-1, -1, len(sizes), -1)
        out = flat
        for layer in self.encoder.layers:
            out = layer(out, pos, refs, shapes)
        return out, sizes


class MSDeformAttnPixelDecoder(nn.Module):
    """See the module docstring. ``in_channels``: channels of the ``"1".."4"`` maps (fine to coarse)."""

    def __init__(self, in_channels: Sequence[int], conv_dim: int, mask_dim: int, transformer_nheads: int = 16,
                 transformer_dim_feedforward: int = 4096, transformer_enc_layers: int = 6,
                 transformer_dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features = ["1", "2", "3", "4"]
        self.num_levels = 3
        # stride 32, 16, 8 (coarse to fine)
        self.input_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for c in list(in_channels)[::-1][:-1])
        for proj in self.input_convs:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.encoder = DeformableEncoder(conv_dim, transformer_nheads, transformer_enc_layers,
                                         transformer_dim_feedforward, transformer_dropout, self.num_levels)
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.mask_feature = Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_feature)
        lateral = Conv2d(in_channels[0], conv_dim, kernel_size=1, bias=False, norm=nn.GroupNorm(32, conv_dim))
        output = Conv2d(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False, norm=nn.GroupNorm(32, conv_dim),
                        activation=F.relu)
        c2_xavier_fill(lateral)
        c2_xavier_fill(output)
        self.lateral_convs = nn.ModuleList([lateral])
        self.output_convs = nn.ModuleList([output])

    def forward_features(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(mask features at stride 4, the coarsest encoder map, the 3 encoder maps coarse to fine)."""
        with torch.autocast("cuda", enabled=False):  # deformable attention in float32, as in the release
            srcs, pos = [], []
            for idx, key in enumerate(self.in_features[::-1][:-1]):
                x = features[key].float()
                srcs.append(self.input_convs[idx](x))
                pos.append(self.pe_layer(x))
            y, sizes = self.encoder(srcs, pos)
            batch = y.shape[0]
            chunks = torch.split(y, [h * w for h, w in sizes], dim=1)
            out = [z.transpose(1, 2).reshape(batch, -1, h, w) for z, (h, w) in zip(chunks, sizes)]
            fine = features[self.in_features[0]].float()
            lateral = self.lateral_convs[0](fine)
            top = F.interpolate(out[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out.append(self.output_convs[0](lateral + top))
            return self.mask_feature(out[-1]), out[0], out[:self.num_levels]

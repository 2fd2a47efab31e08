"""ViT-Adapter neck (Chen et al., 2023) as the official DINOv3 Mask2Former segmentor builds it.

A convolutional *spatial prior module* turns the image into stride-4/8/16/32 maps ``c1..c4``. The
stride-8/16/32 maps, flattened together (plus a learned embedding per level), are the adapter's queries:
at each of the backbone's selected blocks (four evenly spaced), an *extractor* - deformable cross-attention
from the queries into that block's patch tokens (one level, ``deform_num_heads`` heads, ``n_points``
points, value width ``deform_ratio``) followed by a convolutional FFN (``cffn_ratio``) - refines them;
the last interaction has two extra extractors. The backbone stays frozen and is not modified (the release
has no injectors). Outputs: ``c1 + up(c2)`` and ``c2..c4``, each plus the bilinearly resized tokens of one
selected block, each batch-normalised - a dict ``{"1": stride 4, "2": 8, "3": 16, "4": 32}``.

Parameter names are those of the official ``DINOv3_Adapter`` (the backbone is ``backbone``), so released
checkpoints load as they are. Input sides must be multiples of 32 (the segmentor pads).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from dinobench.heads.mask2former.deform_attn import MSDeformAttn

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


def reference_points(sizes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
    """Cell centres of each level in [0, 1] (x, y), concatenated: ``[1, sum(h*w), 1, 2]``."""
    refs = []
    for h, w in sizes:
        ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device), indexing="ij")
        refs.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1)[None])
    return torch.cat(refs, 1)[:, :, None]


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (per sample)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class DWConv(nn.Module):
    """3x3 depth-wise conv applied to each of the three query levels (stride 8, 16, 32: 16:4:1 tokens)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:  # noqa: D102 - h, w: the stride-16 grid
        batch, tokens, channels = x.shape
        n = tokens // 21
        parts = [(0, 16 * n, 2 * h, 2 * w), (16 * n, 20 * n, h, w), (20 * n, tokens, h // 2, w // 2)]
        out = [self.dwconv(x[:, a:b].transpose(1, 2).reshape(batch, channels, hh, ww)).flatten(2).transpose(1, 2)
               for a, b, hh, ww in parts]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    """Linear -> depth-wise conv -> GELU -> Linear."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:  # noqa: D102
        return self.drop(self.fc2(self.drop(self.act(self.dwconv(self.fc1(x), h, w)))))


class Extractor(nn.Module):
    """Adapter queries attend (deformably) to a block's patch tokens, then a conv-FFN; both residual."""

    def __init__(self, dim: int, num_heads: int = 6, n_points: int = 4, n_levels: int = 1, deform_ratio: float = 1.0,
                 with_cffn: bool = True, cffn_ratio: float = 0.25, drop: float = 0.0, drop_path: float = 0.0,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.query_norm, self.feat_norm = LayerNorm6(dim), LayerNorm6(dim)
        self.attn = MSDeformAttn(d_model=dim, n_levels=n_levels, n_heads=num_heads, n_points=n_points,
                                 ratio=deform_ratio)
        self.with_cffn, self.with_cp = with_cffn, with_cp
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop=drop)
            self.ffn_norm = LayerNorm6(dim)
            self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def _forward(self, query: Tensor, feat: Tensor, refs: Tensor, shapes: Tensor, h: int, w: int) -> Tensor:
        query = query + self.attn(self.query_norm(query), refs, self.feat_norm(feat), shapes)
        if self.with_cffn:
            query = query + self.drop_path(self.ffn(self.ffn_norm(query), h, w))
        return query

    def forward(self, query: Tensor, refs: Tensor, feat: Tensor, shapes: Tensor, h: int, w: int) -> Tensor:  # noqa: D102
        if self.with_cp and query.requires_grad:
            return cp.checkpoint(self._forward, query, feat, refs, shapes, h, w, use_reentrant=False)
        return self._forward(query, feat, refs, shapes, h, w)


class InteractionBlock(nn.Module):
    """One interaction: an extractor (plus two extra ones in the last block) updating the adapter queries."""

    def __init__(self, dim: int, num_heads: int, n_points: int, drop_path: float, with_cffn: bool,
                 cffn_ratio: float, deform_ratio: float, extra_extractor: bool, with_cp: bool) -> None:
        super().__init__()
        make = partial(Extractor, dim=dim, num_heads=num_heads, n_points=n_points, deform_ratio=deform_ratio,
                       with_cffn=with_cffn, cffn_ratio=cffn_ratio, drop_path=drop_path, with_cp=with_cp)
        self.extractor = make(n_levels=1)
        self.extra_extractors = nn.Sequential(*[make() for _ in range(2)]) if extra_extractor else None

    def forward(self, tokens: Tensor, c: Tensor, refs: Tensor, shapes: Tensor, h: int, w: int) -> Tensor:  # noqa: D102
        c = self.extractor(c, refs, tokens, shapes, h, w)
        for extractor in self.extra_extractors or ():
            c = extractor(c, refs, tokens, shapes, h, w)
        return c


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """Conv stem -> stride 4, 8, 16, 32 maps, each projected (1x1) to the backbone width; stride 8-32 flattened."""

    def __init__(self, inplanes: int = 64, embed_dim: int = 384) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, inplanes, 2), *_conv_bn_relu(inplanes, inplanes, 1),
                                  *_conv_bn_relu(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # noqa: D102
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return (self.fc1(c1), self.fc2(c2).flatten(2).transpose(1, 2), self.fc3(c3).flatten(2).transpose(1, 2),
                self.fc4(c4).flatten(2).transpose(1, 2))


class ViTAdapter(nn.Module):
    """The adapter neck (see the module docstring); defaults are the release's."""

    def __init__(self, backbone: nn.Module, interaction_indexes: Sequence[int], conv_inplane: int = 64,
                 n_points: int = 4, deform_num_heads: int = 16, drop_path_rate: float = 0.3, with_cffn: bool = True,
                 cffn_ratio: float = 0.25, deform_ratio: float = 0.5, add_vit_feature: bool = True,
                 use_extra_extractor: bool = True, with_cp: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.interaction_indexes = [int(i) for i in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        dim = int(backbone.embed_dim)
        self.patch_size = int(backbone.patch_size)
        self.out_channels, self.out_strides = [dim] * 4, [4, 8, 16, 32]
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(inplanes=conv_inplane, embed_dim=dim)
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.Sequential(*[
            InteractionBlock(dim, deform_num_heads, n_points, drop_path_rate, with_cffn, cffn_ratio, deform_ratio,
                             extra_extractor=use_extra_extractor and i == last, with_cp=with_cp)
            for i in range(len(self.interaction_indexes))])
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.BatchNorm2d(dim) for _ in range(4))
        for module in (self.up, self.spm, self.interactions):
            module.apply(_init_weights)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def train(self, mode: bool = True) -> "ViTAdapter":  # noqa: D102 - the frozen backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def backbone_layers(self, x: Tensor) -> list[Tensor]:
        """Patch tokens ``[B, h*w, D]`` (backbone norm) of the interaction blocks; no gradients (frozen),
        bf16 autocast on CUDA as in the release."""
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=x.is_cuda):
            layers = self.backbone.get_intermediate_layers(x, n=self.interaction_indexes, return_class_token=True)
        return [tokens for tokens, _ in layers]

    def forward(self, x: Tensor, backbone: Any = None) -> dict[str, Tensor]:
        """``{"1".."4"}``: stride 4/8/16/32 maps of the backbone width (``backbone``: ignored, the adapter
        owns its backbone; accepted so it can sit where a :class:`~dinobench.heads.necks.Neck` does)."""
        batch, _, height, width = x.shape
        if height % 32 or width % 32:
            raise ValueError(f"ViT-Adapter needs image sides that are multiples of 32, got {height}x{width}")
        h16, w16 = height // 16, width // 16
        htok, wtok = height // self.patch_size, width // self.patch_size
        shapes = torch.as_tensor([(htok, wtok)], dtype=torch.long, device=x.device)
        refs = reference_points([(height // 8, width // 8), (h16, w16), (height // 32, width // 32)], x.device)
        c1, c2, c3, c4 = self.spm(x)
        c2, c3, c4 = c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]
        sizes = (c2.shape[1], c3.shape[1], c4.shape[1])
        c = torch.cat([c2, c3, c4], dim=1)
        layers = self.backbone_layers(x)
        dim = layers[0].shape[-1]
        maps = []
        for tokens, block in zip(layers, self.interactions):
            tokens = tokens.to(c.dtype)
            c = block(tokens, c, refs, shapes, h16, w16)
            maps.append(tokens.transpose(1, 2).reshape(batch, dim, htok, wtok))
        c2, c3, c4 = torch.split(c, sizes, dim=1)
        c2 = c2.transpose(1, 2).reshape(batch, dim, 2 * h16, 2 * w16)
        c3 = c3.transpose(1, 2).reshape(batch, dim, h16, w16)
        c4 = c4.transpose(1, 2).reshape(batch, dim, h16 // 2, w16 // 2)
        c1 = self.up(c2) + c1
        outs = [c1, c2, c3, c4]
        if self.add_vit_feature:
            targets = [(4 * h16, 4 * w16), (2 * h16, 2 * w16), (h16, w16), (h16 // 2, w16 // 2)]
            outs = [o + F.interpolate(m, size=s, mode="bilinear", align_corners=False)
                    for o, m, s in zip(outs, maps, targets)]
        norms = (self.norm1, self.norm2, self.norm3, self.norm4)
        return {str(i + 1): norm(o) for i, (norm, o) in enumerate(zip(norms, outs))}


def _init_weights(m: nn.Module) -> None:
    """Truncated-normal linears, unit norms, fan-out normal convs (the adapter's init)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            m.bias.data.zero_()

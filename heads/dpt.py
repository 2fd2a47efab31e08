"""DPT depth head (Ranftl et al., 2021) with the structure of the official DINOv3 depth decoder.

1. **Reassemble** each of 4 backbone layers ``(patch_map [B, D, h, w], class_token)``: readout
   (``ignore`` the class token, ``add`` it, or ``project`` the concatenation with Linear+GELU),
   optional BatchNorm, a 1x1 conv to ``post_process_channels[i]``, then resample to 4x, 2x, 1x and
   0.5x of the patch grid (4x4/stride-4 and 2x2/stride-2 transposed convs, identity, 3x3/stride-2
   conv).
2. A 3x3 conv (no bias) brings every scale to ``channels``.
3. **Fusion**, coarsest first: ``out = RCU2(out + RCU1(skip))`` (skip resized when shapes
   differ; the first block has no skip), 2x bilinear upsampling (align_corners), 1x1 projection.
   RCU = pre-activation residual unit ``x + conv(relu(conv(relu(x))))``.
4. ``project`` (3x3 conv + ReLU), then the up-conv head: 3x3 conv to ``channels/2``, 2x upsampling,
   3x3 conv to ``n_hidden_channels``, ReLU, 1x1 conv to ``n_bins``; bins -> depth as in the
   linear head. The output is 16x the patch grid (the input size for patch-16 backbones).

Module names are the official ``DPTHead``'s (``reassemble_blocks``, ``convs``, ``fusion_blocks``, ``project``,
``conv_depth``; convolutions wrapped as ``.conv`` like ``ConvModule``), so the released depth heads load with
``strict=True``; ``projection_after_fusion=False`` (CHMv2) drops ``project``. Convolutions of ``ConvModule`` start
from Kaiming-normal (fan-out) weights, as its ``init_weights`` does. Channel widths are arguments so tests run a
tiny DPT on CPU.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.heads.depth import BinsToDepth
from dinobench.heads.linear_seg import LayerFeatures

READOUT_TYPES = ("ignore", "add", "project")


class ConvUnit(nn.Module):
    """A convolution registered as ``conv`` (the key the official ``ConvModule`` gives it), Kaiming-normal
    (fan-out) initialised as ``ConvModule.init_weights`` does, with an optional ReLU ``before`` or ``after`` it."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, padding: int = 0, bias: bool = True,
                 relu: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if self.relu == "before":
            x = torch.relu(x)
        x = self.conv(x)
        return torch.relu(x) if self.relu == "after" else x


class ReassembleBlocks(nn.Module):
    """Token maps of 4 layers -> feature maps at 4x, 2x, 1x, 0.5x of the patch grid."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], readout_type: str = "ignore",
                 use_batchnorm: bool = False) -> None:
        super().__init__()
        if readout_type not in READOUT_TYPES:
            raise ValueError(f"readout_type must be one of {READOUT_TYPES}, got {readout_type!r}")
        if len(in_channels) != 4 or len(out_channels) != 4:
            raise ValueError("DPT reassembles exactly 4 layers (in_channels and post_process_channels of length 4)")
        self.readout_type = readout_type
        self.projects = nn.ModuleList(ConvUnit(c_in, c_out, 1) for c_in, c_out in zip(in_channels, out_channels))
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        if readout_type == "project":
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * c, c), nn.GELU()) for c in in_channels)
        self.batchnorm_layers = nn.ModuleList(nn.BatchNorm2d(c) if use_batchnorm else nn.Identity() for c in in_channels)

    def forward(self, features: LayerFeatures) -> list[Tensor]:
        """Four maps, finest first."""
        out = []
        for i, (x, cls_token) in enumerate(features):
            if self.readout_type == "project":
                b, c, h, w = x.shape
                tokens = x.flatten(2).transpose(1, 2)
                readout = cls_token[:, None, :].expand_as(tokens)
                x = self.readout_projects[i](torch.cat([tokens, readout], dim=-1)).transpose(1, 2).reshape(b, c, h, w)
            elif self.readout_type == "add":
                x = x + cls_token[:, :, None, None]
            out.append(self.resize_layers[i](self.projects[i](self.batchnorm_layers[i](x))))
        return out


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: ``x + conv2(relu(conv1(relu(x))))``."""

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvUnit(channels, channels, 3, padding=1, bias=bias, relu="before")
        self.conv2 = ConvUnit(channels, channels, 3, padding=1, bias=bias, relu="before")

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return x + self.conv2(self.conv1(x))


class FeatureFusionBlock(nn.Module):
    """``unit2(x + unit1(skip))`` -> 2x bilinear upsampling -> 1x1 projection (the first block has no skip)."""

    def __init__(self, channels: int, with_skip: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.project = ConvUnit(channels, channels, 1, bias=True)
        self.res_conv_unit1 = ResidualConvUnit(channels, bias) if with_skip else None
        self.res_conv_unit2 = ResidualConvUnit(channels, bias)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:  # noqa: D102
        if skip is not None and self.res_conv_unit1 is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.res_conv_unit1(skip)
        x = self.res_conv_unit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.project(x)


class UpConvHead(nn.Module):
    """``conv3x3 -> 2x bilinear -> conv3x3 -> ReLU -> conv1x1`` to the output channels (bins), as ``head``."""

    def __init__(self, channels: int, n_output_channels: int, n_hidden_channels: int = 32) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, n_hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(n_hidden_channels, n_output_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.head(x)


class DPTHead(nn.Module):
    """DPT decoder over 4 backbone layers -> depth ``[B, 1, 16h, 16w]`` (``h, w``: patch grid); ``state_dict()`` keys
    are the official ``DPTHead``'s."""

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 post_process_channels: Sequence[int] | None = None, readout_type: str = "ignore",
                 use_batchnorm: bool = False, n_bins: int = 256, n_hidden_channels: int = 32,
                 min_depth: float = 1e-3, max_depth: float = 10.0, bins_strategy: str = "linear",
                 norm_strategy: str = "linear", use_bias: bool = False, projection_after_fusion: bool = True) -> None:
        super().__init__()
        in_channels = list(in_channels)
        post = list(post_process_channels) if post_process_channels is not None else list(in_channels)
        self.post_process_channels = post
        self.reassemble_blocks = ReassembleBlocks(in_channels, post, readout_type, use_batchnorm)
        self.convs = nn.ModuleList(ConvUnit(c, channels, 3, padding=1, bias=False) for c in post)
        self.fusion_blocks = nn.ModuleList(FeatureFusionBlock(channels, with_skip=i > 0, bias=use_bias)
                                           for i in range(4))
        self.project = ConvUnit(channels, channels, 3, padding=1, relu="after") if projection_after_fusion \
            else nn.Identity()
        self.conv_depth = UpConvHead(channels, n_bins, n_hidden_channels)
        self.to_depth = BinsToDepth(min_depth, max_depth, bins_strategy, norm_strategy)

    def forward_features(self, features: LayerFeatures) -> Tensor:
        """Fused ``[B, channels, 8h, 8w]`` map before the up-conv head."""
        if len(features) != 4:
            raise ValueError(f"DPTHead needs 4 backbone layers, got {len(features)}")
        maps = [conv(m) for conv, m in zip(self.convs, self.reassemble_blocks(features))]
        out = self.fusion_blocks[0](maps[-1])
        for i in range(1, 4):
            out = self.fusion_blocks[i](out, maps[-(i + 1)])
        return self.project(out)

    def logits(self, features: LayerFeatures) -> Tensor:
        """Bin logits ``[B, n_bins, 16h, 16w]`` (what the official decoder returns)."""
        return self.conv_depth(self.forward_features(features))

    def forward(self, features: LayerFeatures) -> Tensor:
        """Depth in metres ``[B, 1, 16h, 16w]``."""
        return self.to_depth(self.logits(features))

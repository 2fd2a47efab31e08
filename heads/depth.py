"""Linear depth head (AdaBins-style bins), the bins -> depth map, and SigLoss (official DINOv3).

Official NYU linear recipe (``dinov3/eval/depth``): last layer, backbone norm, BatchNorm, no class
token, a 1x1 conv to 256 bins; depth = sum_k w_k * c_k with bin centres ``c`` linearly (or
log-) spaced in ``[min_depth, max_depth]`` and weights ``w = (relu(x) + 0.1) / sum`` (the official
default "linear" normalisation; "softmax" and "sigmoid" are the alternatives; "chmv2_mixlog" is the
released CHMv2 head's mixed-log bins and normalisation, equal to the official functions: max abs diff 0.0). One output
channel means plain regression: ``relu(x) + min_depth``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from dinobench.errors import ConfigError
from dinobench.heads.linear_seg import LayerFeatures, concat_layers

BINS_STRATEGIES = ("linear", "log", "chmv2_mixlog")
NORM_STRATEGIES = ("linear", "softmax", "sigmoid", "chmv2_mixlog")
#: the CHMv2 head predicts heights / 8: its bins span [min, max / 8] and its outputs are multiplied back by 8
CHMV2_SCALE = 8.0


def depth_bins(min_depth: float, max_depth: float, n_bins: int, strategy: str = "linear",
               device: torch.device | str | None = None) -> Tensor:
    """Bin centres ``[n_bins]``: linearly or log-uniformly spaced over ``[min_depth, max_depth]``, or CHMv2's mix
    (``chmv2_mixlog``: over ``[min, max / 8]``, weight ``t`` from 1 to 0 on the log spacing, ``1 - t`` on the linear)."""
    if strategy == "linear":
        return torch.linspace(min_depth, max_depth, n_bins, device=device)
    if strategy == "log":
        return torch.exp(torch.linspace(math.log(min_depth), math.log(max_depth), n_bins, device=device))
    if strategy == "chmv2_mixlog":
        top = max_depth / CHMV2_SCALE
        linear = torch.linspace(min_depth, top, n_bins, device=device)
        log = torch.exp(torch.linspace(math.log(min_depth), math.log(top), n_bins, device=device))
        t = torch.linspace(1.0, 0.0, n_bins, device=device)
        return t * log + (1.0 - t) * linear
    raise ConfigError(f"protocol.head.bins_strategy: {strategy!r} is not one of {', '.join(BINS_STRATEGIES)}")


def chmv2_mixlog_depth(logits: Tensor, bins: Tensor, max_shift: float = 1e-4, shift_eps: float = 1e-8,
                       eps: float = 1e-12) -> Tensor:
    """CHMv2's bins -> height ``[B, 1, h, w]``: ``relu`` logits shifted up by ``min(max(-min, 0), 1e-4) + 1e-8``,
    normalised to sum 1 (the denominator made finite and >= eps), the bins (>= eps) weighted, clamped to >= eps,
    times 8 (the head's scale)."""
    y = torch.relu(logits)
    y = y + (-y.amin(dim=1, keepdim=True)).clamp(0.0, max_shift) + shift_eps
    denominator = torch.nan_to_num(y.sum(dim=1, keepdim=True), nan=1.0, posinf=1.0, neginf=1.0).clamp_min(eps)
    depth = (y / denominator * bins.view(1, -1, 1, 1).clamp_min(eps)).sum(dim=1, keepdim=True).clamp_min(eps)
    return depth * CHMV2_SCALE


class BinsToDepth(nn.Module):
    """``[B, K, h, w]`` bin logits -> ``[B, 1, h, w]`` depth (weighted sum of bin centres)."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0, bins_strategy: str = "linear",
                 norm_strategy: str = "linear") -> None:
        super().__init__()
        if bins_strategy not in BINS_STRATEGIES:
            raise ConfigError(f"protocol.head.bins_strategy: {bins_strategy!r} is not one of "
                              f"{', '.join(BINS_STRATEGIES)}")
        if norm_strategy not in NORM_STRATEGIES:
            raise ConfigError(f"protocol.head.norm_strategy: {norm_strategy!r} is not one of "
                              f"{', '.join(NORM_STRATEGIES)}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.bins_strategy, self.norm_strategy = bins_strategy, norm_strategy

    def forward(self, x: Tensor) -> Tensor:
        """Depth in metres, one channel."""
        n_bins = x.shape[1]
        if n_bins == 1:
            return torch.relu(x) + self.min_depth
        x = x.float()
        bins = depth_bins(self.min_depth, self.max_depth, n_bins, self.bins_strategy, device=x.device)
        if self.norm_strategy == "chmv2_mixlog":
            return chmv2_mixlog_depth(x, bins)
        if self.norm_strategy == "linear":
            weights = torch.relu(x) + 0.1
            weights = weights / weights.sum(dim=1, keepdim=True)
        elif self.norm_strategy == "softmax":
            weights = torch.softmax(x, dim=1)
        else:
            weights = torch.sigmoid(x)
            weights = weights / weights.sum(dim=1, keepdim=True)
        return torch.einsum("bkhw,k->bhw", weights, bins).unsqueeze(1)


class LinearDepthHead(nn.Module):
    """``[layers (+cls)] -> BatchNorm2d -> Conv1x1 (n_bins)`` -> :class:`BinsToDepth`; ``state_dict()`` keys are the
    official ``LinearHead``'s (``batchnorm_layer``, ``conv_depth``)."""

    def __init__(self, in_channels: int | Sequence[int], n_bins: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 10.0, use_batchnorm: bool = True, use_cls_token: bool = False,
                 bins_strategy: str = "linear", norm_strategy: str = "linear") -> None:
        super().__init__()
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        self.in_channels, self.use_cls_token = in_channels, use_cls_token
        channels = sum(in_channels) * (2 if use_cls_token else 1)
        self.batchnorm_layer = nn.BatchNorm2d(channels) if use_batchnorm else nn.Identity()
        self.conv_depth = nn.Conv2d(channels, n_bins, kernel_size=1)
        nn.init.normal_(self.conv_depth.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_depth.bias)
        self.to_depth = BinsToDepth(min_depth, max_depth, bins_strategy, norm_strategy)

    def logits(self, features: LayerFeatures) -> Tensor:
        """Bin logits ``[B, n_bins, h, w]`` on the patch grid (what the official decoder returns)."""
        return self.conv_depth(self.batchnorm_layer(concat_layers(features, self.use_cls_token)))

    def forward(self, features: LayerFeatures) -> Tensor:
        """Depth ``[B, 1, h, w]`` on the patch grid."""
        return self.to_depth(self.logits(features))


class SigLoss(nn.Module):
    """Scale-invariant log loss as the official DINOv3 depth code computes it.

    ``g = log(pred + eps) - log(gt + eps)`` over valid pixels (eps = 1e-3);
    ``loss = sqrt(0.15 * mean(g)^2 + var(g))`` with the unbiased variance, where the variance term
    is left out for the first ``warm_iter`` iterations (official ``warm_up=True, warm_iter=100``).
    The official module counts its calls; here the caller passes the training ``iteration``
    (one call per iteration there), so a resumed run gets the same loss.
    """

    def __init__(self, warm_up: bool = True, warm_iter: int = 100, eps: float = 1e-3,
                 mean_weight: float = 0.15) -> None:
        super().__init__()
        self.warm_up, self.warm_iter, self.eps, self.mean_weight = warm_up, int(warm_iter), eps, mean_weight

    def forward(self, pred: Tensor, target: Tensor, valid_mask: Tensor | None = None,
                iteration: int | None = None) -> Tensor:
        """Scalar loss; ``iteration=None`` means past the warm-up."""
        if valid_mask is None:
            valid_mask = torch.ones_like(target, dtype=torch.bool)
        valid_mask = valid_mask.bool()
        if pred.shape != target.shape:
            pred = pred.reshape(target.shape)
        g = torch.log(pred.float()[valid_mask] + self.eps) - torch.log(target.float()[valid_mask] + self.eps)
        if g.numel() == 0:  # no valid pixel in the batch: no signal (and no NaN)
            return pred.sum() * 0.0
        dg = self.mean_weight * g.mean() ** 2
        in_warm_up = self.warm_up and iteration is not None and iteration < self.warm_iter
        if not in_warm_up and g.numel() > 1:
            dg = dg + torch.var(g)
        return torch.sqrt(dg) if dg > 0 else torch.abs(dg)

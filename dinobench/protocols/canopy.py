"""Canopy height (metres) from RGB tiles with a frozen backbone: the released CHMv2 head's task.

The head is the DPT depth decoder in the CHMv2 configuration (defaults below = ``dinov3_vitl16_chmv2``'s
``DecoderConfig``: class-token readout, no BatchNorm, no projection after fusion, biased fusion convs, 128 hidden
channels, 256 mixed-log bins over 0.001-96 m with the CHMv2 normalisation), on the SAT-493M ViT-L by default
(its own image normalisation). Evaluation: the whole tile (padded to whole patches), prediction resized to the
height map, clamped to ``[0, max_height]``; pixel-level MAE / RMSE / R² / bias in metres over every pixel with
data (:class:`dinobench.metrics.dense.CanopyHeightMetric`); main metric MAE. ``--save-predictions`` draws
predicted and true height maps (viridis, 0 to the tile's 98th percentile).

``protocol.head_weights=FILE`` evaluates a released head (``dinobench run --head dinov3_vitl16_chmv2``).
Training a head here uses the shared engine with an L1 loss over pixels with data and flips + random crops:
the CHMv2 training recipe is not part of the official release, so a head trained here is a baseline, not a
reproduction. The CHMv2 paper's block-level aggregates are not computed (their block size and aggregation
are not in the released code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.canopy import CanopyTransform
from dinobench.metrics.dense import CanopyHeightMetric
from dinobench.protocols.depth import DepthInferenceConfig, DPTDepthProtocol, DPTHeadConfig, predict_depth
from dinobench.visualize import colorize_depth
from dinobench.templates.trained_head import TrainedHeadConfig, transform_sections


@dataclass
class CanopyHeadConfig(DPTHeadConfig):
    """The released CHMv2 decoder (``dinov3_vitl16_chmv2``)."""

    layers: str | list[int] = "four_even"
    channels: int = 256
    post_process_channels: list[int] | None = field(default_factory=lambda: [128, 256, 512, 1024])
    n_hidden_channels: int = 128
    use_batchnorm: bool = False
    use_cls_token: bool = True
    use_bias: bool = True
    projection_after_fusion: bool = False
    bins_strategy: Literal["linear", "log", "chmv2_mixlog"] = "chmv2_mixlog"
    norm_strategy: Literal["linear", "softmax", "sigmoid", "chmv2_mixlog"] = "chmv2_mixlog"
    min_depth: float | None = 0.001
    max_depth: float | None = 96.0


@dataclass
class CanopyInferenceConfig(DepthInferenceConfig):
    """The CHMv2 notebook: one forward of the whole tile, no flip."""

    flip: bool = False


@dataclass
class CanopyConfig(TrainedHeadConfig):
    """``protocol=dict(type="chm", head=dict(...), inference=dict(...), head_weights=None)``."""

    head: CanopyHeadConfig = field(default_factory=CanopyHeadConfig)
    inference: CanopyInferenceConfig = field(default_factory=CanopyInferenceConfig)


class CanopyHeightProtocol(DPTDepthProtocol):
    """CHMv2 canopy-height evaluation (see the module docstring)."""

    name = "chm"
    version = "1"
    Config = CanopyConfig
    main_metric = "mae"
    higher_is_better = {"mae": False, "rmse": False, "bias": False, "r2": True}  # type: ignore[assignment]

    def validate(self) -> None:
        """No SigLoss: :meth:`loss` is L1 (the config has no ``loss`` section)."""

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """Flip + random crop (``transform.train.crop_size``) for training; normalisation only for evaluation."""
        crop = transform_sections(ctx.cfg)["train"].get("crop_size")
        crop = int(crop[0] if isinstance(crop, (list, tuple)) else crop) if crop else None
        return (CanopyTransform(ctx.image_mean, ctx.image_std, train=True, crop_size=crop),
                CanopyTransform(ctx.image_mean, ctx.image_std))

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """L1 over the pixels with data (heights in metres)."""
        gt = batch["height"][:, None]
        pred = model(batch["image"])
        if pred.shape[-2:] != gt.shape[-2:]:
            pred = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        valid = gt.isfinite()
        return (pred[valid] - gt[valid]).abs().mean(), {}

    def new_metric(self, dataset: Any) -> CanopyHeightMetric:
        """Pooled pixel metrics up to the dataset's ``max_height``."""
        return CanopyHeightMetric(dataset.max_depth)

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Prediction at the height map's size, into the metric."""
        gt = sample["height"][0]
        metric.update(predict_depth(model, sample["image"].to(device), self.config.inference, gt.shape)[0, 0].cpu(), gt)

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any, ctx: RunContext) -> tuple[Any, Any]:
        """Predicted and true height maps (viridis, 0 m to the truth's 98th percentile; no data drawn as 0 m)."""
        gt = sample["height"].numpy()
        pred = predict_depth(model, sample["image"][None].to(ctx.device), self.config.inference,
                             gt.shape)[0, 0].cpu().numpy()
        valid = gt[np.isfinite(gt)]
        top = float(np.percentile(valid, 98)) if valid.size else float(dataset.max_depth)
        return (colorize_depth(pred, 0.0, max(top, 1.0), cmap="viridis"),
                colorize_depth(np.nan_to_num(gt, nan=0.0), 0.0, max(top, 1.0), cmap="viridis"))

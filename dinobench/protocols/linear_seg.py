"""Linear semantic segmentation, the official DINOv3 ADE20K linear protocol.

Frozen backbone; last-layer patch tokens (backbone norm, no class token) -> Dropout2d(0.1) ->
BatchNorm -> 1x1 conv, trained with per-pixel cross-entropy (ignore index 255, averaged over all
pixels as the official loss) by the training engine (:mod:`dinobench.training`): AdamW lr 1e-3, wd 1e-3, 1500 warm-up
iterations + one-cycle cosine, 40k iterations, batch 16, random resize (0.5-2.0) crop 512 + flip.
Evaluation: sliding windows (crop 512, stride 341; or whole image), logits resized to the
original label, argmax, mIoU / aAcc / mAcc from mmseg's ``IoUMetric``
(:class:`dinobench.dense_metrics.SegmentationMetric`). Reported: the final head's metrics (the
official script reports the best of its periodic evaluations, a selection on the val set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.dense_transforms import build_seg_eval_transform, build_seg_train_transform
from dinobench.dense_inference import dense_predict
from dinobench.dense_metrics import SegmentationMetric
from dinobench.heads.linear_seg import LinearSegHead, segmentation_loss
from dinobench.protocols.dense import (DenseHeadConfig, DenseProtocol, InferenceConfig, inference_kwargs,
                                       transform_sections)
from dinobench.visualize import colorize_mask


@dataclass
class LinearSegHeadConfig(DenseHeadConfig):
    """Official linear head: last layer with the backbone norm, no class token, BatchNorm, Dropout2d 0.1."""

    dropout: float = 0.1


@dataclass
class SegInferenceConfig(InferenceConfig):
    """Official: sliding windows of 512 every 341 pixels."""

    mode: Literal["whole", "slide"] = "slide"


@dataclass
class LinearSegConfig:
    """``protocol=dict(type="linear_seg", head=dict(...), inference=dict(...), num_visualizations=4)``."""

    head: LinearSegHeadConfig = field(default_factory=LinearSegHeadConfig)
    inference: SegInferenceConfig = field(default_factory=SegInferenceConfig)
    num_visualizations: int = 4  # predictions drawn by --save-predictions


def segmentation_logits(model: nn.Module, image: Tensor, num_classes: int, inference: InferenceConfig,
                        out_size: Any) -> Tensor:
    """Class logits ``[B, K, H, W]`` of ``image`` at ``out_size`` (whole image or sliding windows)."""
    return dense_predict(model, image, num_outputs=num_classes, out_size=out_size, **inference_kwargs(inference))


class LinearSegProtocol(DenseProtocol):
    """Train the linear head on ``train``, report mIoU / aAcc / mAcc on ``val`` (and per-class IoU)."""

    name = "linear_seg"
    version = "1"
    Config = LinearSegConfig
    main_metric = "mIoU"

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """Official ADE20K train (random resize, crop, flip, photometric) and eval (resize) transforms."""
        transform = transform_sections(ctx.cfg)
        return (build_seg_train_transform(transform["train"], ctx.image_mean, ctx.image_std),
                build_seg_eval_transform(transform["eval"], ctx.image_mean, ctx.image_std))

    def make_head(self, channels: list[int], train_set: Any) -> nn.Module:
        """BN + 1x1 conv to the dataset's classes."""
        hc = self.config.head
        self.num_classes = int(train_set.num_classes)
        self.ignore_index = int(getattr(train_set, "ignore_index", 255))
        return LinearSegHead(channels, self.num_classes, dropout=hc.dropout, use_batchnorm=hc.use_batchnorm,
                             use_cls_token=hc.use_cls_token)

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """Per-pixel cross-entropy, ignore index excluded, averaged over all pixels (official)."""
        return segmentation_loss(model(batch["image"]), batch["mask"], self.ignore_index), {}

    def new_metric(self, dataset: Any) -> SegmentationMetric:
        """mmseg IoUMetric over the dataset's classes."""
        return SegmentationMetric(self.num_classes, ignore_index=getattr(dataset, "ignore_index", 255),
                                  class_names=getattr(dataset, "class_names", None))

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Logits resized to the original-size label, argmax, into the metric."""
        label = sample["mask"][0]
        logits = segmentation_logits(model, sample["image"].to(device), self.num_classes, self.config.inference,
                                     label.shape[-2:])
        metric.update(logits[0].argmax(0).cpu(), label)

    def tables(self, metric: SegmentationMetric) -> dict[str, list[dict[str, Any]]]:
        """Per-class IoU (percent; NaN for classes absent from predictions and labels)."""
        return {"per_class_iou": [{"class": name, "IoU": value} for name, value in metric.per_class_iou().items()]}

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any, ctx: RunContext) -> tuple[Any, Any]:
        """Colourised predicted and ground-truth masks of one val sample."""
        label = sample["mask"]
        logits = segmentation_logits(model, sample["image"][None].to(ctx.device), self.num_classes,
                                     self.config.inference, label.shape[-2:])
        return (colorize_mask(logits[0].argmax(0).cpu().numpy(), self.num_classes),
                colorize_mask(label.numpy(), self.num_classes))

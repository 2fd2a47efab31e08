"""Linear semantic segmentation, the official DINOv3 ADE20K linear protocol.

Frozen backbone; last-layer patch tokens (backbone norm, no class token) -> Dropout2d(0.1) ->
BatchNorm -> 1x1 conv, trained with per-pixel cross-entropy (ignore index 255, averaged over all
pixels as the official loss) by the training engine (:mod:`dinobench.training`): AdamW lr 1e-3, wd 1e-3, 1500 warm-up
iterations + one-cycle cosine, 40k iterations, batch 16, random resize (0.5-2.0) crop 512 + flip.
Evaluation: sliding windows (crop 512, stride 341; or whole image), logits resized to the
original label, argmax, mIoU / aAcc / mAcc from mmseg's ``IoUMetric``
(:class:`dinobench.metrics.dense.SegmentationMetric`). Reported (``protocol.report``): ``"best"`` (default,
as the official script, which returns the metrics of its best-mIoU evaluation among those every
``eval.eval_interval`` = 5000 iterations, the 40k-th included: ``train.eval_every``) or ``"final"`` (the last
head's, the one the official ``model_final.pth`` holds). The record has both (``mIoU_best``, ``mIoU_final``,
``best_iteration``); ``mIoU`` is the reported one. The per-class table is the final head's.
``protocol.head_weights=FILE`` evaluates a given head without training: an official ``model_final.pth`` (its
``segmentation_model.1.*`` entries) or a head exported by ``dinobench export``, loaded strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from dinobench.dense_inference import dense_predict
from dinobench.heads.linear_seg import LinearSegHead, segmentation_loss
from dinobench.protocol import TrainedHead
from dinobench.protocols.dense import (DenseHeadConfig, InferenceConfig, SegmentationProtocol, inference_kwargs,
                                       official_layer_set)
from dinobench.templates.trained_head import TrainedHeadConfig


@dataclass
class LinearSegHeadConfig(DenseHeadConfig):
    """Official linear head: last layer with the backbone norm, no class token, BatchNorm, Dropout2d 0.1."""

    dropout: float = 0.1


@dataclass
class SegInferenceConfig(InferenceConfig):
    """Official: sliding windows of 512 every 341 pixels."""

    mode: Literal["whole", "slide"] = "slide"


@dataclass
class LinearSegConfig(TrainedHeadConfig):
    """``protocol=dict(type="linear_seg", head=dict(...), inference=dict(...), report="best",
    num_visualizations=4)``."""

    head: LinearSegHeadConfig = field(default_factory=LinearSegHeadConfig)
    inference: SegInferenceConfig = field(default_factory=SegInferenceConfig)
    #: the metrics reported: the best periodic evaluation's (official) or the final head's; the record has both
    report: Literal["best", "final"] = "best"


def segmentation_logits(model: nn.Module, image: Tensor, num_classes: int, inference: InferenceConfig,
                        out_size: Any) -> Tensor:
    """Class logits ``[B, K, H, W]`` of ``image`` at ``out_size`` (whole image or sliding windows)."""
    return dense_predict(model, image, num_outputs=num_classes, out_size=out_size, **inference_kwargs(inference))


class LinearSegProtocol(SegmentationProtocol):
    """Train the linear head on ``train``, report mIoU / aAcc / mAcc on ``val`` (and per-class IoU)."""

    name = "linear_seg"
    version = "2"  # 2: mIoU = the best periodic evaluation's by default (protocol.report), as the official script
    Config = LinearSegConfig
    eval_keys = ("inference", "report")
    file_keys = ("head_weights",)
    head_file_prefixes = ("segmentation_model.1.",)  # where the official training's model_final.pth keeps the head

    def make_head(self, channels: list[int], train_set: Any) -> nn.Module:
        """BN + 1x1 conv to the dataset's classes."""
        hc = self.config.head
        self.num_classes = int(train_set.num_classes)
        self.ignore_index = int(getattr(train_set, "ignore_index", 255))
        return LinearSegHead(channels, self.num_classes, dropout=hc.dropout, use_batchnorm=hc.use_batchnorm,
                             use_cls_token=hc.use_cls_token)

    def trained_head(self, model: nn.Module) -> TrainedHead:
        """The head as an official ADE20K ``model_final.pth`` holds it, with the official ``decoder_head`` config."""
        hc = self.config.head
        return TrainedHead({f"segmentation_model.1.{k}": v for k, v in self.official_state(model).items()},
                           "segmentation", {"type": "linear",
                                            "backbone_out_layers": official_layer_set(model.backbone, model.layers),
                                            "use_batchnorm": hc.use_batchnorm, "use_cls_token": hc.use_cls_token,
                                            "use_backbone_norm": hc.use_backbone_norm,
                                            "num_classes": self.num_classes, "dropout": hc.dropout})

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """Per-pixel cross-entropy, ignore index excluded, averaged over all pixels (official)."""
        return segmentation_loss(model(batch["image"]), batch["mask"], self.ignore_index), {}

    def class_scores(self, model: nn.Module, image: Tensor, out_size: Any) -> Tensor:
        """Class logits (whole image or sliding windows) at ``out_size``."""
        return segmentation_logits(model, image, self.num_classes, self.config.inference, out_size)

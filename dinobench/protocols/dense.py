"""The dense families' shared parts: the head and inference sections of segmentation and depth configs, the
``transform.train`` / ``transform.eval`` sections, :class:`DenseProtocol` (the trained-head template,
:mod:`dinobench.templates.trained_head`, with those sections) and :class:`SegmentationProtocol` (ADE20K transforms,
mmseg's IoU metric, per-class table and figures shared by linear segmentation and Mask2Former).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.dense_transforms import build_seg_eval_transform, build_seg_train_transform
from dinobench.heads.necks import OFFICIAL_LAYER_SETS, resolve_layers
from dinobench.metrics.dense import SegmentationMetric
from dinobench.templates.trained_head import TrainedHeadProtocol, transform_sections
from dinobench.visualize import colorize_mask


@dataclass
class DenseHeadConfig:
    """What every official dense head reads: which layers, with the backbone norm, with the class token, BN."""

    layers: str | list[int] = "last"
    use_cls_token: bool = False
    use_batchnorm: bool = True
    use_backbone_norm: bool = True


@dataclass
class InferenceConfig:
    """How a dense head is applied at evaluation: whole image or sliding windows (mmseg's slide inference)."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: int | list[int] = 512
    stride: int | list[int] = 341


class DenseProtocol(TrainedHeadProtocol):
    """The dense families' base (segmentation, depth, canopy height): the trained-head template whose config has a
    ``head`` section (``layers``, ``use_backbone_norm``) and an ``inference`` section (whole image or slide)."""

    eval_keys = ("inference",)


def official_layer_set(backbone: nn.Module, layers: Sequence[int]) -> str | list[int]:
    """The official ``BackboneLayersSet`` name of ``layers`` (``LAST``, ``FOUR_LAST``, ``FOUR_EVEN_INTERVALS``), which
    the official segmentation config requires; the list itself when it is none of them."""
    for name, spec in OFFICIAL_LAYER_SETS.items():
        if resolve_layers(backbone, spec) == list(layers):
            return name
    return list(layers)


class SegmentationProtocol(DenseProtocol):
    """Semantic segmentation on the template: a family gives :meth:`class_scores` (and its head); the ADE20K
    transforms, mmseg's IoUMetric, the per-class IoU table and the figures are shared."""

    main_metric = "mIoU"
    num_classes: int

    def class_scores(self, model: nn.Module, image: Tensor, out_size: Any) -> Tensor:  # pragma: no cover
        """Per-class scores ``[B, K, *out_size]`` of ``image`` (argmax = the prediction)."""
        raise NotImplementedError

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """Official ADE20K train (random resize, crop, flip, photometric) and eval (resize) transforms."""
        transform = transform_sections(ctx.cfg)
        return (build_seg_train_transform(transform["train"], ctx.image_mean, ctx.image_std),
                build_seg_eval_transform(transform["eval"], ctx.image_mean, ctx.image_std))

    def new_metric(self, dataset: Any) -> SegmentationMetric:
        """mmseg IoUMetric over the dataset's classes."""
        return SegmentationMetric(self.num_classes, ignore_index=getattr(dataset, "ignore_index", 255),
                                  class_names=getattr(dataset, "class_names", None))

    def scores_input(self, sample: dict[str, Any], device: Any, batch: bool = False) -> Any:
        """What :meth:`class_scores` takes of a sample: its image on ``device`` (``batch``: a sample not yet batched
        gets its batch axis)."""
        image = sample["image"]
        return (image[None] if batch else image).to(device)

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Scores at the original-size label, argmax, into the metric."""
        label = sample["mask"][0]
        scores = self.class_scores(model, self.scores_input(sample, device), label.shape[-2:])
        metric.update(scores[0].argmax(0).cpu(), label)

    def tables(self, metric: SegmentationMetric) -> dict[str, list[dict[str, Any]]]:
        """Per-class IoU (percent; NaN for classes absent from predictions and labels)."""
        return {"per_class_iou": [{"class": name, "IoU": value} for name, value in metric.per_class_iou().items()]}

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any, ctx: RunContext) -> tuple[Any, Any]:
        """Colourised predicted and ground-truth masks of one val sample."""
        label = sample["mask"]
        scores = self.class_scores(model, self.scores_input(sample, ctx.device, batch=True), label.shape[-2:])
        return (colorize_mask(scores[0].argmax(0).cpu().numpy(), self.num_classes),
                colorize_mask(label.numpy(), self.num_classes))


def inference_kwargs(inference: InferenceConfig) -> dict[str, Any]:
    """:func:`dinobench.dense_inference.dense_predict` keyword arguments of an inference section."""
    crop: int | Sequence[int] = inference.crop_size
    stride: int | Sequence[int] = inference.stride
    return {"mode": inference.mode, "crop_size": crop, "stride": stride}

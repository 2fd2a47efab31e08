"""Mask2Former semantic segmentation on a frozen backbone (the DINOv3 release's segmentor), trained here.

Model: :func:`dinobench.heads.mask2former.build_m2f_segmentor` (ViT-Adapter at four evenly spaced blocks +
Mask2Former head, official parameter names). Training on the shared engine with Mask2Former's criterion
(Hungarian matching, class/BCE/dice losses on importance-sampled points, deep supervision); the schedule is
the task config's ``train`` section. Evaluation as the official ``eval.py``: for each scale ratio a view of the
original image (sized and resized as the official TTA, :mod:`dinobench.data.seg_tta`) and, with ``flip``, its
mirror image: sliding-window semantic scores (softmax(class)[:K] . sigmoid(masks), rounded to bfloat16 per window
as the official code does; a view smaller than the window on both sides is slid over by a square window of its
shorter side), resized to the label, un-mirrored, softmax over classes, averaged over the views (every scale, then
every mirrored one), argmax; mIoU from mmseg's ``IoUMetric``. The task ``ade20k-m2f`` evaluates with the
release's 5 scales x flip.

``head_weights=PATH`` evaluates a given segmentor checkpoint (the released
``dinov3_vit7b16_ade20k_m2f_head-*.pth`` or one trained here) without training; its sha256 replaces the path
in the protocol hash and is listed in the record's ``input_files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.dense_transforms import SegEvalConfig
from dinobench.data.seg_tta import SegTTAViews
from dinobench.dense_inference import dense_predict
from dinobench.errors import ConfigError
from dinobench.heads.mask2former import BACKBONE_PREFIX, M2FCriterion, build_m2f_segmentor, semantic_targets
from dinobench.heads.necks import resolve_layers
from dinobench.protocol import TrainedHead
from dinobench.protocols.dense import InferenceConfig, SegmentationProtocol, official_layer_set, transform_sections
from dinobench.typed_config import reader_options
from dinobench.utils.seeding import seed_from
from dinobench.templates.trained_head import TrainedHeadConfig


@dataclass
class M2FHeadConfig:
    """The segmentor's architecture; defaults are the release's (hidden dim 2048, 100 queries, 9 decoder and 6
    pixel-decoder layers, 16 heads, FFN 4096, adapter at four evenly spaced blocks)."""

    hidden_dim: int = 2048
    layers: str | list[int] = "four_even"
    num_queries: int = 100
    nheads: int = 16
    dim_feedforward: int = 4096
    dec_layers: int = 9
    enc_layers: int = 6
    drop_path_rate: float = 0.3  # adapter extractors
    with_cp: bool = True  # activation checkpointing in the adapter (memory only; runtime key)


@dataclass
class M2FLossConfig:
    """Mask2Former's criterion: matching costs = loss weights; points per mask; uncertainty sampling."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    eos_coef: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True


@dataclass
class M2FInferenceConfig(InferenceConfig):
    """Official: sliding windows of 896 every 596 px; ``scales=[0.9, 0.95, 1.0, 1.05, 1.1]`` + ``flip=True`` is the
    release's multi-scale evaluation (10 views, the task ``ade20k-m2f``'s default)."""

    mode: Literal["whole", "slide"] = "slide"
    crop_size: int | list[int] = 896
    stride: int | list[int] = 596
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    # dtype of each window's class scores (sum over queries); the official slide inference rounds them to
    # bfloat16 whatever the model's dtype; float32 keeps them exact (version 1's behaviour)
    score_dtype: Literal["bfloat16", "float32"] = "bfloat16"


@dataclass
class M2FConfig(TrainedHeadConfig):
    """``protocol=dict(type="m2f_seg", head=..., loss=..., inference=..., head_weights=None)``."""

    head: M2FHeadConfig = field(default_factory=M2FHeadConfig)
    loss: M2FLossConfig = field(default_factory=M2FLossConfig)
    inference: M2FInferenceConfig = field(default_factory=M2FInferenceConfig)


class M2FSegProtocol(SegmentationProtocol):
    """Train (or load) the Mask2Former segmentor, report mIoU / aAcc / mAcc on ``val`` and per-class IoU."""

    name = "m2f_seg"
    version = "2"  # 2: official views (PIL, from the original), square window for small views, bf16 window scores
    Config = M2FConfig
    runtime_keys = ("num_visualizations", "head.with_cp")
    eval_keys = ("inference",)
    file_keys = ("head_weights",)

    def validate(self) -> None:  # noqa: D102
        inference = self.config.inference
        if not inference.scales or any(s <= 0 for s in inference.scales):
            raise ConfigError(f"protocol.inference.scales must be positive ratios, got {inference.scales}")

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """The ADE20K training transform (crops must be multiples of 32, the adapter's coarsest stride); evaluation:
        the scale views of :class:`~dinobench.data.seg_tta.SegTTAViews`."""
        crop = transform_sections(ctx.cfg)["train"].get("crop_size", (512, 512))
        sides = [crop, crop] if isinstance(crop, int) else list(crop)
        if any(int(side) % 32 for side in sides):
            raise ConfigError(f"transform.train.crop_size={crop}: Mask2Former with ViT-Adapter needs multiples of "
                              f"32, e.g. {[max(32, int(side) // 32 * 32) for side in sides]}")
        train, _ = super().transforms(ctx)
        scale = reader_options(SegEvalConfig, transform_sections(ctx.cfg)["eval"], "transform.eval", drop=())["scale"]
        return train, SegTTAViews(scale, self.config.inference.scales, ctx.image_mean, ctx.image_std)

    def trained_head(self, model: nn.Module) -> TrainedHead:
        """The segmentor without its backbone (adapter ``segmentation_model.0.*``, head ``segmentation_model.1.*``,
        the released file's keys) with the official ``decoder_head`` config."""
        hc = self.config.head
        layers = official_layer_set(model.backbone, resolve_layers(model.backbone, hc.layers))
        return TrainedHead(self.official_state(model), "segmentation",
                           {"type": "m2f", "backbone_out_layers": layers, "num_classes": self.num_classes,
                            "hidden_dim": hc.hidden_dim})

    def build_model(self, ctx: RunContext, train_set: Any) -> nn.Module:
        """The segmentor (seeded init), with ``head_weights`` loaded strictly when given."""
        hc = self.config.head
        self.num_classes = int(train_set.num_classes)
        self.ignore_index = int(getattr(train_set, "ignore_index", 255))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_from(ctx.seed, 17))
            model = build_m2f_segmentor(ctx.backbone, hidden_dim=hc.hidden_dim, num_classes=self.num_classes,
                                        layers=hc.layers, num_queries=hc.num_queries, nheads=hc.nheads,
                                        dim_feedforward=hc.dim_feedforward, dec_layers=hc.dec_layers,
                                        enc_layers=hc.enc_layers, with_cp=hc.with_cp,
                                        drop_path_rate=hc.drop_path_rate)
        self.load_head_weights(model, (BACKBONE_PREFIX,))
        lc = self.config.loss
        self.criterion = M2FCriterion(self.num_classes, lc.class_weight, lc.mask_weight, lc.dice_weight, lc.eos_coef,
                                      lc.num_points, lc.oversample_ratio, lc.importance_sample_ratio,
                                      lc.deep_supervision)
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """Mask2Former's weighted loss over all decoder layers (logs: the last layer's terms)."""
        outputs = model(batch["image"])
        return self.criterion(outputs, semantic_targets(batch["mask"], self.ignore_index))

    def scores_input(self, sample: dict[str, Any], device: Any, batch: bool = False) -> list[Tensor]:
        """The sample's scale views (:class:`~dinobench.data.seg_tta.SegTTAViews`) on ``device``."""
        return [(view[None] if batch else view).to(device) for view in sample["views"]]

    def class_scores(self, model: nn.Module, image: Tensor | Sequence[Tensor], out_size: Any) -> Tensor:
        """Class probabilities ``[B, K, *out_size]`` averaged over the scale views ``image`` (one tensor: one view)
        and, with ``flip``, their mirror images: every view, then every mirrored view (the official order)."""
        inference = self.config.inference
        views = [image] if isinstance(image, Tensor) else list(image)
        semantic = partial(model.semantic, dtype=getattr(torch, inference.score_dtype))
        total = None
        for flip in ((False, True) if inference.flip else (False,)):
            for view in views:
                pred = dense_predict(semantic, view.flip(-1) if flip else view, mode=inference.mode,
                                     num_outputs=self.num_classes, crop_size=inference.crop_size,
                                     stride=inference.stride, out_size=out_size, square_small=True).float()
                pred = (pred.flip(-1) if flip else pred).softmax(1)
                total = pred if total is None else total + pred
        assert total is not None
        return total / (len(views) * (2 if inference.flip else 1))

"""Plain-DETR object detection on a frozen backbone (the DINOv3 release's detector), trained here.

Model: :func:`dinobench.heads.plain_detr.build_plain_detr` (official parameter names; ``head`` holds the fields
of the official ``DetectionHeadConfig``, defaults as the release's ``dinov3_vit7b16_de`` except the window count,
which depends on the backbone). Training on the shared engine with hybrid matching
(:class:`~dinobench.heads.plain_detr.PlainDetrCriterion`); the schedule is the task config's ``train`` section.
Evaluation: the one-to-one queries, top-``inference.topk`` (query, class) pairs per image mapped back to the
original image, COCO json -> pycocotools ``COCOeval`` (AP, AP50, AP75, APs/m/l, AR@1/10/100, ARs/m/l, percent),
sharded over ranks; the per-category AP table. ``head_weights=PATH`` evaluates a given detector checkpoint (the
released ``dinov3_vit7b16_coco2017_detr_head-*.pth`` with its backbone, or one trained here) without training,
recorded by sha256.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import torch
from PIL import Image
from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.detection_transforms import build_det_eval_transform, build_det_train_transform
from dinobench.metrics.detection import CocoMetric
from dinobench.errors import ConfigError
from dinobench.heads.plain_detr import PlainDetrCriterion, build_plain_detr, postprocess
from dinobench.heads.plain_detr.boxes import xyxy_to_cxcywh
from dinobench.protocol import TrainedHead
from dinobench.training.head import frozen_prefixes
from dinobench.utils.seeding import seed_from
from dinobench.visualize import denormalize_image, draw_boxes
from dinobench.templates.trained_head import TrainedHeadConfig, TrainedHeadProtocol, transform_sections


@dataclass
class PlainDetrHeadConfig:
    """The official ``DetectionHeadConfig`` fields (``num_classes`` comes from the dataset); defaults: the release."""

    with_box_refine: bool = True
    two_stage: bool = True
    mixed_selection: bool = True
    look_forward_twice: bool = True
    k_one2many: int = 6
    lambda_one2many: float = 1.0
    num_queries_one2one: int = 1500
    num_queries_one2many: int = 1500
    reparam: bool = True
    position_embedding: str = "sine"
    num_feature_levels: int = 1
    dec_layers: int = 6
    dim_feedforward: int = 2048
    hidden_dim: int = 768
    dropout: float = 0.0
    nheads: int = 8
    norm_type: str = "pre_norm"
    aux_loss: bool = True
    proposal_feature_levels: int = 4
    proposal_min_size: int = 50
    decoder_type: str = "global_rpe_decomp"
    decoder_use_checkpoint: bool = False  # memory only (runtime key)
    decoder_rpe_hidden_dim: int = 512
    decoder_rpe_type: str = "linear"
    add_transformer_encoder: bool = True
    num_encoder_layers: int = 6
    layers_to_use: list[int] | None = None  # None: four evenly spaced blocks (m * n_blocks // 4 - 1)
    n_windows_sqrt: int = 0  # the release: 3 for ViT-7B, 2 for ViT-L+
    proposal_in_stride: int | None = None  # None: the patch size
    proposal_tgt_strides: list[int] | None = None  # None: [0.5, 1, 2, 4] x the patch size
    backbone_use_layernorm: bool = False


@dataclass
class PlainDetrLossConfig:
    """Plain-DETR's loss (and matching-cost) weights and focal alpha."""

    cls_weight: float = 2.0
    # L1 box weight of the loss and the matching cost: 1.0 in Plain-DETR's reparameterised recipe
    # (configs/swinv2_small_mim_pt_boxrpe_reparam.sh:39-40, --set_cost_bbox 1.0 --bbox_loss_coef 1.0), which the
    # default head.reparam=True follows; main.py's 5.0 belongs to normalised boxes (set it with head.reparam=False)
    bbox_weight: float = 1.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25


@dataclass
class PlainDetrInferenceConfig:
    """Detections kept per image (the release: 1500) and the score above which figures draw a box."""

    topk: int = 1500
    draw_score_threshold: float = 0.3


@dataclass
class PlainDetrConfig(TrainedHeadConfig):
    """``protocol=dict(type="plaindetr", head=..., loss=..., inference=..., head_weights=None)``."""

    head: PlainDetrHeadConfig = field(default_factory=PlainDetrHeadConfig)
    loss: PlainDetrLossConfig = field(default_factory=PlainDetrLossConfig)
    inference: PlainDetrInferenceConfig = field(default_factory=PlainDetrInferenceConfig)


def collate_detection(samples: list[dict[str, Any]], reparam: bool) -> dict[str, Any]:
    """Images as a list (the detector pads them), targets as the criterion wants them: ``(cx, cy, w, h)`` in
    pixels with ``reparam``, else normalised by each image's size."""
    targets = []
    for sample in samples:
        boxes = xyxy_to_cxcywh(sample["boxes"].float())
        if not reparam:
            h, w = sample["size"]
            boxes = boxes / boxes.new_tensor([w, h, w, h])
        targets.append({"labels": sample["labels"], "boxes": boxes})
    return {"images": [s["image"] for s in samples], "targets": targets,
            "image_id": [int(s["image_id"]) for s in samples],
            "size": torch.tensor([list(s["size"]) for s in samples]),
            "orig_size": torch.tensor([list(s["orig_size"]) for s in samples])}


class PlainDetrProtocol(TrainedHeadProtocol):
    """Train (or load) Plain-DETR, report COCO AP on ``val`` and per-category AP."""

    name = "plaindetr"
    version = "2"  # 2: the reparam matcher pairs every query with every target also when their counts agree
    Config = PlainDetrConfig
    runtime_keys = ("num_visualizations", "head.decoder_use_checkpoint", "inference.draw_score_threshold")
    eval_keys = ("inference",)
    eval_keys = ("inference",)
    file_keys = ("head_weights",)
    main_metric = "AP"

    def validate(self) -> None:  # noqa: D102
        if self.config.inference.topk < 1:
            raise ConfigError(f"protocol.inference.topk must be >= 1, got {self.config.inference.topk}")

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """DETR's multi-scale train augmentation and the eval resize of the task config."""
        transform = transform_sections(ctx.cfg)
        return (build_det_train_transform(transform["train"], ctx.image_mean, ctx.image_std),
                build_det_eval_transform(transform["eval"], ctx.image_mean, ctx.image_std))

    def collate(self) -> Callable[[list[Any]], Any]:  # noqa: D102
        return partial(collate_detection, reparam=self.config.head.reparam)

    def trained_head(self, model: nn.Module) -> TrainedHead:
        """The detector without its frozen backbone, keyed as the released ``*_detr_head-*.pth``'s ``model``."""
        return TrainedHead(self.official_state(model), "detection", {"num_classes": self.num_classes})

    def build_model(self, ctx: RunContext, train_set: Any) -> nn.Module:
        """The detector (seeded init) for the dataset's classes, with ``head_weights`` loaded strictly."""
        head = dataclasses.asdict(self.config.head)
        self.num_classes = int(train_set.num_classes)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed_from(ctx.seed, 17))
                model = build_plain_detr(ctx.backbone, num_classes=self.num_classes, **head)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"protocol.head: {exc}") from None
        self.load_head_weights(model, frozen_prefixes(model))
        lc = self.config.loss
        self.criterion = PlainDetrCriterion(self.num_classes, cls_weight=lc.cls_weight, bbox_weight=lc.bbox_weight,
                                            giou_weight=lc.giou_weight, focal_alpha=lc.focal_alpha,
                                            reparam=self.config.head.reparam, k_one2many=self.config.head.k_one2many,
                                            lambda_one2many=self.config.head.lambda_one2many)
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """Hybrid-matching loss of the batch (logs: the final layer's terms, both query groups)."""
        return self.criterion(model(batch["images"]), batch["targets"])

    def new_metric(self, dataset: Any) -> CocoMetric:
        """COCOeval over the split's images."""
        return CocoMetric(dataset.coco, dataset.image_ids, dataset.label_to_category)

    def detections(self, model: nn.Module, images: list[Tensor], size: Tensor, orig_size: Tensor,
                   device: str) -> list[dict[str, Tensor]]:
        """Top-k detections per image, XYXY pixels of ``orig_size`` (sizes ``[B, 2]`` as (H, W))."""
        outputs = model([image.to(device) for image in images])
        topk = min(int(self.config.inference.topk), outputs["pred_logits"].shape[1] * outputs["pred_logits"].shape[2])
        if self.config.head.reparam:
            return postprocess(outputs, size.to(device), topk, True, orig_size.to(device))
        return postprocess(outputs, orig_size.to(device), topk, False)

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Detections of a collated batch into the metric."""
        for image_id, det in zip(sample["image_id"], self.detections(model, sample["images"], sample["size"],
                                                                      sample["orig_size"], device)):
            metric.update(image_id, det["boxes"].cpu(), det["scores"].cpu(), det["labels"].cpu())

    def tables(self, metric: CocoMetric) -> dict[str, list[dict[str, Any]]]:
        """AP (IoU 0.50:0.95) per category, percent."""
        return {"per_category_ap": [{"category": name, "AP": value} for name, value in metric.per_category_ap().items()]}

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any,
             ctx: RunContext) -> tuple[Image.Image, Image.Image]:
        """Detections above the draw threshold and the ground truth, boxed on the (eval-resized) image."""
        size = torch.tensor([list(sample["size"])])
        (det,) = self.detections(model, [sample["image"]], size, size, ctx.device)
        keep = det["scores"] >= float(self.config.inference.draw_score_threshold)
        image = denormalize_image(sample["image"].numpy(), ctx.image_mean, ctx.image_std)
        names = [str(dataset.coco.cats.get(c, {}).get("name", c)) for c in dataset.label_to_category]
        predicted = draw_boxes(image, det["boxes"][keep].cpu().numpy(), det["labels"][keep].tolist(), self.num_classes,
                               det["scores"][keep].tolist(), names)
        truth = draw_boxes(image, sample["boxes"].numpy(), sample["labels"].tolist(), self.num_classes, names=names)
        return predicted, truth

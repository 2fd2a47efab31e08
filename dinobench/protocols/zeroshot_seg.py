"""Zero-shot semantic segmentation with a dino.txt head, as the official notebook
(``dinotxt_segmentation_inference.ipynb``) does it; mIoU from mmseg's ``IoUMetric``.

Class features: each prompt's text embedding without its CLS half (the half aligned with the patch mean),
normalised, averaged over the templates, normalised again. Image: short side ``transform.eval.scale``; each
window (``inference.mode="slide"``: ``crop_size`` every ``stride``) stretched to a multiple of the patch size;
cosine similarity of the normalised patch tokens with the class features, upsampled to the window, softmax over
classes, averaged over overlapping windows; ``"whole"``: one pass, no softmax. Bilinear to the label size,
argmax. ``patch_tokens="backbone"`` (default) takes the vision backbone's patch tokens - what the notebook's
code uses - ``"head"`` the tokens after the dino.txt vision blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dinobench.context import RunContext
from dinobench.data.dense_transforms import build_seg_eval_transform
from dinobench.dense_inference import dense_predict
from dinobench.metrics.dense import SegmentationMetric
from dinobench.errors import ConfigError
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.text.inference import DinoTxtSizes, load_dinotxt, prompt_cache_payload, resolve_templates
from dinobench.text.cache import cached_embeddings
from dinobench.text.tokenizer import tokenize
from dinobench.training import evaluate_sharded


@dataclass
class ZeroShotSegInference:
    """The notebook's defaults: sliding windows of 384 every 192 px (on a 512 px short side)."""

    mode: Literal["whole", "slide"] = "slide"
    crop_size: int = 384
    stride: int = 192


@dataclass
class ZeroShotSegConfig:
    """``protocol=dict(type="zeroshot_seg", head_weights=PATH, ...)``."""

    model: DinoTxtSizes = field(default_factory=DinoTxtSizes)
    head_weights: str | None = None  # the dino.txt checkpoint (required to run)
    templates: str | list[str] = "openai_imagenet"
    class_names: str | list[str] | None = None  # None: the dataset's
    patch_tokens: Literal["backbone", "head"] = "backbone"
    inference: ZeroShotSegInference = field(default_factory=ZeroShotSegInference)


class ZeroShotSegProtocol(Protocol):
    """Zero-shot mIoU / aAcc / mAcc of a dino.txt head on ``val`` and the per-class IoU table."""

    name = "zeroshot_seg"
    version = "1"
    Config = ZeroShotSegConfig
    file_keys = ("head_weights",)

    def validate(self) -> None:
        """The templates are checked before any data is read."""
        resolve_templates(self.config.templates)

    @torch.no_grad()
    def class_features(self, model: Any, names: list[str], device: str, templates: list[str] | None = None) -> Tensor:
        """``[C, D/2]``: per class, the normalised mean of the normalised patch-half prompt embeddings."""
        templates = templates or resolve_templates(self.config.templates)
        out = []
        for name in names:
            tokens = tokenize([t.format(name) for t in templates], self.config.model.context_length).to(device)
            feats = model.encode_text(tokens)
            feats = F.normalize(feats[:, feats.shape[1] // 2:], dim=-1).mean(0)
            out.append(F.normalize(feats, dim=-1))
        return torch.stack(out)

    def patch_map(self, model: Any, images: Tensor) -> Tensor:
        """Normalised patch features ``[B, D, h, w]`` of images stretched to a multiple of the patch size."""
        patch = int(model.visual_model.backbone.patch_size)
        h, w = (math.ceil(s / patch) * patch for s in images.shape[-2:])
        if (h, w) != tuple(images.shape[-2:]):
            images = F.interpolate(images, size=(h, w), mode="bicubic", align_corners=False)
        _, head_tokens, backbone_tokens = model.visual_model(images)
        tokens = backbone_tokens if self.config.patch_tokens == "backbone" else head_tokens
        tokens = F.normalize(tokens, dim=-1)
        return tokens.transpose(1, 2).reshape(len(images), -1, h // patch, w // patch)

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Segment ``val`` with the class prompts; mmseg mIoU."""
        model = load_dinotxt(ctx, self.config.model, self.config.head_weights, "zero-shot segmentation")
        val = ctx.dataset("val")
        val.transform = build_seg_eval_transform((ctx.cfg.get("transform") or {}).get("eval", {}), ctx.image_mean,
                                                 ctx.image_std)
        names = self.config.class_names or [str(c) for c in val.classes]
        if len(names) != val.num_classes:
            raise ConfigError(f"protocol.class_names has {len(names)} names but the dataset has {val.num_classes}")
        templates = resolve_templates(self.config.templates)
        payload = prompt_cache_payload(ctx, "zeroshot_patch_half_embeddings", list(names), templates,
                                       self.config.model)
        classes = cached_embeddings(ctx, payload,
                                    lambda: self.class_features(model, list(names), ctx.device, templates))
        classes = classes.to(ctx.device)
        if classes.shape[1] != self.patch_map(model, torch.zeros(1, 3, 32, 32, device=ctx.device)).shape[1]:
            raise ConfigError(f"protocol.patch_tokens={self.config.patch_tokens!r}: patch features and the text "
                              f"embedding's patch half differ in size; use patch_tokens='head'")
        inference = self.config.inference

        def window(images: Tensor) -> Tensor:
            cos = torch.einsum("cd,bdhw->bchw", classes, self.patch_map(model, images))
            if inference.mode == "whole":
                return cos
            cos = F.interpolate(cos, size=images.shape[-2:], mode="bilinear", align_corners=False)
            return cos.softmax(dim=1)

        metric = SegmentationMetric(val.num_classes, ignore_index=getattr(val, "ignore_index", 255),
                                    class_names=list(val.classes))

        def update(sample: dict[str, Any]) -> None:
            label = sample["mask"][0]
            scores = dense_predict(window, sample["image"].to(ctx.device), mode=inference.mode,
                                   num_outputs=len(names), crop_size=inference.crop_size, stride=inference.stride,
                                   out_size=label.shape[-2:])
            metric.update(scores[0].argmax(0).cpu(), label)

        with torch.no_grad():
            metrics = evaluate_sharded(val, update, metric, desc=f"eval {self.name}")
        table = [{"class": name, "IoU": value} for name, value in metric.per_class_iou().items()]
        return ProtocolResult(metrics, "mIoU", higher_is_better=True, tables={"per_class_iou": table})

"""Joint image + box transforms for detection on the one joint-transform system (:mod:`dinobench.data.joint`:
torchvision ``transforms.v2`` with ``tv_tensors.BoundingBoxes``, so boxes move with the pixels): DETR's COCO recipe.

Train: horizontal flip; then either a random short side from ``scales`` (long side at most ``max_size``) or -
with ``crop`` - resize to a short side in ``crop.resize``, random crop of ``crop.min_size``..``crop.max_size``
per side, then the random short side; boxes cut to the crop, empty ones dropped; normalise. Eval: short side
``scale`` (long side at most ``max_size``), normalise; the boxes of the original image are evaluated, so the
eval transform records the resized ``size`` for post-processing back to ``orig_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from dinobench.data.joint import JointTransform
from dinobench.errors import ConfigError
from dinobench.typed_config import reader_options


@dataclass
class DetTrainConfig:
    """``transform.train`` of detection: DETR's multi-scale COCO recipe."""

    scales: int | list[int] = field(default_factory=lambda: list(range(480, 801, 32)))  # random short side
    max_size: int = 1333  # longest side
    crop: dict | None = None  # dict(resize=[...], min_size=..., max_size=...): DETR's resize + random crop branch
    flip_prob: float = 0.5


@dataclass
class DetEvalConfig:
    """``transform.eval`` of detection: short side ``scale``, long side at most ``max_size``."""

    scale: int | list[int] = 800
    max_size: int = 1333


@dataclass
class DetTransformConfig:
    """The ``transform`` section of detection datasets (COCO)."""

    train: DetTrainConfig = field(default_factory=DetTrainConfig)
    eval: DetEvalConfig = field(default_factory=DetEvalConfig)


def _randint(low: int, high: int) -> int:
    """Uniform integer in ``[low, high]`` from torch's generator (as every v2 transform: one seed, exact resume)."""
    return int(torch.randint(low, high + 1, ()).item())


class RandomSizeCrop(v2.Transform):
    """A crop of random height and width in ``[min_size, min(max_size, side)]`` at a random position."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        self.min_size, self.max_size = int(min_size), int(max_size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # noqa: D102
        height, width = v2._utils.query_size(flat_inputs)
        h = _randint(min(self.min_size, height), min(height, self.max_size))
        w = _randint(min(self.min_size, width), min(width, self.max_size))
        return {"top": _randint(0, height - h), "left": _randint(0, width - w), "height": h, "width": w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        return self._call_kernel(F.crop, inpt, **params)


class DetectionTransform(JointTransform):
    """A v2 pipeline over a detection sample (image and XYXY boxes move together, labels follow the boxes the
    sanitiser keeps); adds ``size`` (the transformed image's (H, W))."""

    def __init__(self, pipeline: v2.Transform) -> None:
        super().__init__(pipeline, keys=("image", "boxes"), record_size=True)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:  # noqa: D102
        out = super().__call__(sample)
        out["boxes"] = out["boxes"].float()
        return out


def _ints(value: Any, key: str) -> list[int]:
    values = [value] if isinstance(value, int) else list(value or [])
    if not values or any(not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"transform.{key}={value!r}: expected a positive integer or a list of them")
    return values


def build_det_train_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> DetectionTransform:
    """DETR's multi-scale train augmentation from ``transform.train`` (see the module docstring)."""
    cfg = reader_options(DetTrainConfig, cfg, "transform.train", drop=(), typed=False)
    scales = _ints(cfg["scales"], "train.scales")
    max_size = int(cfg["max_size"])
    resize = v2.RandomShortestSize(scales, max_size=max_size)
    crop = cfg["crop"]
    if crop:
        pick = v2.RandomChoice([resize, v2.Compose([v2.RandomShortestSize(_ints(crop.get("resize"), "train.crop.resize")),
                                                    RandomSizeCrop(int(crop["min_size"]), int(crop["max_size"])),
                                                    v2.RandomShortestSize(scales, max_size=max_size)])])
    else:
        pick = resize
    steps = [v2.RandomHorizontalFlip(float(cfg["flip_prob"])), pick,
             v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0), v2.Normalize(list(mean), list(std))]
    return DetectionTransform(v2.Compose(steps))


def build_det_eval_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> DetectionTransform:
    """Short side ``transform.eval.scale`` (default 800), long side at most ``max_size`` (1333); normalise."""
    cfg = reader_options(DetEvalConfig, cfg, "transform.eval", drop=(), typed=False)
    scale = _ints(cfg["scale"], "eval.scale")[0]
    if int(cfg["max_size"]) <= scale:
        raise ConfigError(f"transform.eval.max_size={cfg['max_size']!r} must be larger than transform.eval.scale={scale} "
                          f"(the longest side may reach max_size; the shortest is scale)")
    return DetectionTransform(v2.Compose([v2.Resize(scale, max_size=int(cfg["max_size"])),
                                          v2.Normalize(list(mean), list(std))]))

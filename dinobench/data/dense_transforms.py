"""Joint image + target transforms for the dense protocols (DINOv3 / mmseg semantics, torch RNG).

They act on the sample dicts of :mod:`dinobench.data.dense` (``image`` float [3, H, W] in [0, 1],
``mask`` long [H, W] or ``depth`` float [H, W]) and return a new dict; each is a pipeline of the one
joint-transform system (:mod:`dinobench.data.joint`: torchvision v2 over ``tv_tensors.Image`` / ``Mask``).
All randomness comes from torch's global RNG (seeded per sample by the engine), so a seeded run repeats exactly.

Segmentation, train (DINOv3 ADE20K linear): resize -> random crop (``cat_max_ratio``) -> flip ->
photometric distortion -> normalise -> pad to ``crop_size`` (image 0, mask ``ignore_index``).
Segmentation, eval: the image is resized to ``scale`` (keep ratio) and normalised; **the mask keeps
its original size** -- predictions are resized back to ``mask.shape`` before the metric.
Depth, train (DINOv3 NYU): optional fixed NYU crop -> optional resize -> rotation (p=0.5) -> flip
-> random crop -> colour augmentation (p=0.5) -> normalise. Depth, eval: normalise (optionally
fixed crop / resize of the image only; the depth keeps its size).

Sizes: ``scale`` is an int (short side, DINOv3's ``FixedSideResize``), a ``(long, short)`` pair
(mmseg keep-ratio rescale: the largest size fitting both bounds) or None (keep the size).
``crop_size`` is an int or ``(h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from functools import partial

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms import v2

from dinobench.data.joint import (CatMaxRatioCrop, FixedCrop, ImageOnly, JointTransform, PadTo, RandomCrop,
                                  RandomRotation, Rescale, coin, normalize, uniform)
from dinobench.errors import ConfigError
from dinobench.typed_config import reader_options

#: DINOv3's PhotoMetricDistortion parameters (brightness delta on the 0..255 scale)
PHOTOMETRIC_DEFAULTS = dict(brightness_delta=32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                            hue_range=(-0.5, 0.5))
#: DINOv3's depth ColorAug parameters; ``gamma_scale=255`` reproduces its gamma on 0..255 values
COLOR_AUG_DEFAULTS = dict(prob=0.5, gamma_range=(0.9, 1.1), brightness_range=(0.9, 1.1), color_range=(0.9, 1.1),
                          gamma_scale=255.0)
#: NYU training crop (x1, y1, x2, y2) on the 480x640 frame, scaled proportionally for other sizes
NYU_TRAIN_CROP_480x640 = (43, 45, 608, 472)


# ----------------------------------------------------------------------------- transform sections
@dataclass
class SegTrainConfig:
    """``transform.train`` of segmentation (defaults: DINOv3's ADE20K linear recipe)."""

    scale: int | list[int] | None = 512  # short side, [long, short] keep-ratio, or None (keep)
    ratio_range: list[float] | None = field(default_factory=lambda: [0.5, 2.0])  # None: no random rescale
    crop_size: int | list[int] = 512  # int or [h, w]
    cat_max_ratio: float = 0.75  # up to 10 tries for a crop no class covers more of
    flip_prob: float = 0.5
    photometric: bool | dict = True  # True: PHOTOMETRIC_DEFAULTS; a dict overrides some of them
    ignore_index: int = 255


@dataclass
class SegEvalConfig:
    """``transform.eval`` of segmentation: the image is resized, the mask keeps its size."""

    scale: int | list[int] | None = 512
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # of the image resize (antialiased)


@dataclass
class SegTransformConfig:
    """The ``transform`` section of segmentation datasets (ADE20K, seg folders)."""

    train: SegTrainConfig = field(default_factory=SegTrainConfig)
    eval: SegEvalConfig = field(default_factory=SegEvalConfig)


@dataclass
class DepthTrainConfig:
    """``transform.train`` of depth (the official NYU values are in configs/_base_/datasets/nyu.py)."""

    fixed_crop: str | None = None  # "nyu": DINOv3's NYUCrop; None: none
    scale: int | list[int] | None = None
    crop_size: int | list[int] | None = None  # random crop (smaller images are padded)
    rotation_deg: float = 2.5
    rotation_prob: float = 0.5
    flip_prob: float = 0.5
    color_aug: bool | dict = True  # True: COLOR_AUG_DEFAULTS; a dict overrides some of them


@dataclass
class DepthEvalConfig:
    """``transform.eval`` of depth: normalise (optional fixed crop of both, resize of the image only)."""

    fixed_crop: str | None = None
    scale: int | list[int] | None = None


@dataclass
class DepthTransformConfig:
    """The ``transform`` section of depth datasets (NYU, depth folders)."""

    train: DepthTrainConfig = field(default_factory=DepthTrainConfig)
    eval: DepthEvalConfig = field(default_factory=DepthEvalConfig)


@dataclass
class CanopyTrainConfig:
    """``transform.train`` of canopy-height tiles: flip + random crop."""

    crop_size: int | list[int] | None = None  # None: whole tiles


@dataclass
class CanopyEvalConfig:
    """``transform.eval`` of canopy-height tiles: normalisation only (no keys)."""


@dataclass
class CanopyTransformConfig:
    """The ``transform`` section of canopy-height datasets."""

    train: CanopyTrainConfig = field(default_factory=CanopyTrainConfig)
    eval: CanopyEvalConfig = field(default_factory=CanopyEvalConfig)


# ----------------------------------------------------------------------------- helpers
def _pair(value: Any, key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ConfigError(f"transform {key}={value!r}: expected an int or [height, width]")


def scaled_size(height: int, width: int, scale: Any, ratio: float = 1.0) -> tuple[int, int]:
    """Target (h, w) for ``scale`` (int short side | (long, short) keep-ratio | None) times ``ratio``."""
    if scale is None:
        return max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5))
    if isinstance(scale, int):  # DINOv3 FixedSideResize: the short side becomes int(scale * ratio)
        short = int(scale * ratio)
        if height > width:
            return int(short * height / width + 0.5), short
        return short, int(short * width / height + 0.5)
    if isinstance(scale, (list, tuple)) and len(scale) == 2:  # mmseg Resize(keep_ratio=True)
        long_edge, short_edge = int(max(scale) * ratio), int(min(scale) * ratio)
        factor = min(long_edge / max(height, width), short_edge / min(height, width))
        return int(height * factor + 0.5), int(width * factor + 0.5)
    raise ConfigError(f"transform scale={scale!r}: expected an int (short side), [long, short] or None")


def _scale_to(scale: Any) -> Any:
    """``(H, W, ratio) -> size`` of ``scale`` for :class:`~dinobench.data.joint.Rescale` (checked now)."""
    scaled_size(64, 64, scale)
    return lambda height, width, ratio: scaled_size(height, width, scale, ratio)


def photometric_distortion(image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """DINOv3/mmseg PhotoMetricDistortion on a [0, 1] image: brightness, contrast (first or last),
    saturation, hue -- each applied with probability 0.5. (torchvision's v1 colour kernels: v2's differ by
    one float32 ulp, and these keep the released numbers bit for bit.)"""
    p = {**PHOTOMETRIC_DEFAULTS, **params}
    if coin(0.5):
        image = (image + uniform(-p["brightness_delta"], p["brightness_delta"]) / 255.0).clamp(0, 1)
    contrast_first = coin(0.5)

    def contrast(img: torch.Tensor) -> torch.Tensor:
        return (img * uniform(*p["contrast_range"])).clamp(0, 1) if coin(0.5) else img

    if contrast_first:
        image = contrast(image)
    if coin(0.5):
        image = TF.adjust_saturation(image, uniform(*p["saturation_range"])).clamp(0, 1)
    if coin(0.5):
        image = TF.adjust_hue(image, uniform(*p["hue_range"]))
    if not contrast_first:
        image = contrast(image)
    return image


def color_aug(image: torch.Tensor, c: dict[str, Any]) -> torch.Tensor:
    """DINOv3's depth ColorAug: with probability ``prob``, gamma, brightness and per-channel colour factors."""
    if not coin(c["prob"]):
        return image
    s = float(c["gamma_scale"])
    image = (image * s) ** uniform(*c["gamma_range"]) / s
    image = image * uniform(*c["brightness_range"])
    colours = torch.tensor([uniform(*c["color_range"]) for _ in range(3)], dtype=image.dtype)
    return (image * colours.view(3, 1, 1)).clamp(0, 1)


#: DINOv3's NYUCrop as fractions (x1, y1, x2, y2) of the frame (43:608, 45:472 on 480x640)
NYU_CROP_FRACTIONS = (NYU_TRAIN_CROP_480x640[0] / 640, NYU_TRAIN_CROP_480x640[1] / 480,
                      NYU_TRAIN_CROP_480x640[2] / 640, NYU_TRAIN_CROP_480x640[3] / 480)


def _fixed_crop(value: Any) -> list[Any]:
    if value not in (None, "nyu", "NYU", "full", "FULL"):
        raise ConfigError(f"transform fixed_crop={value!r}: expected 'nyu' or None")
    return [FixedCrop(NYU_CROP_FRACTIONS)] if value in ("nyu", "NYU") else []


# ----------------------------------------------------------------------------- segmentation
class SegTrainTransform(JointTransform):
    """Random resize (ratio range) -> crop with ``cat_max_ratio`` -> flip -> photometric -> normalise -> pad."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        cfg = reader_options(SegTrainConfig, cfg, "transform.train", drop=())
        self.scale = cfg["scale"]
        self.ratio_range = tuple(cfg["ratio_range"] or (1.0, 1.0))
        self.crop_size = _pair(cfg["crop_size"], "crop_size")
        self.cat_max_ratio = float(cfg["cat_max_ratio"])
        self.flip_prob = float(cfg["flip_prob"])
        photometric = cfg["photometric"]
        self.photometric = dict(photometric) if isinstance(photometric, dict) else ({} if photometric else None)
        self.ignore_index = int(cfg["ignore_index"])
        steps: list[Any] = [Rescale(_scale_to(self.scale), self.ratio_range),
                            CatMaxRatioCrop(self.crop_size, self.cat_max_ratio, self.ignore_index),
                            v2.RandomHorizontalFlip(self.flip_prob)]
        if self.photometric is not None:
            steps.append(ImageOnly(partial(photometric_distortion, params=self.photometric)))
        steps += [normalize(mean, std), PadTo(self.crop_size, self.ignore_index)]
        super().__init__(steps, keys=("image", "mask"))


class SegEvalTransform(JointTransform):
    """Resize the image to ``scale`` (keep ratio; None = keep) and normalise; the mask is untouched."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        options = reader_options(SegEvalConfig, cfg, "transform.eval", drop=())
        self.scale = options["scale"]
        mode = InterpolationMode.BICUBIC if options["interpolation"] == "bicubic" else InterpolationMode.BILINEAR
        super().__init__([Rescale(_scale_to(self.scale), interpolation=mode), normalize(mean, std)], keys=("image",))


# ----------------------------------------------------------------------------- depth
class DepthTrainTransform(JointTransform):
    """[NYU crop] -> [resize] -> rotation (p=0.5) -> flip -> random crop -> colour aug -> normalise."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        cfg = reader_options(DepthTrainConfig, cfg, "transform.train", drop=())
        steps = _fixed_crop(cfg["fixed_crop"])
        self.scale = cfg["scale"]
        self.crop_size = _pair(cfg["crop_size"], "crop_size") if cfg["crop_size"] else None
        if self.scale is not None:
            steps.append(Rescale(_scale_to(self.scale)))
        steps += [RandomRotation(float(cfg["rotation_deg"]), float(cfg["rotation_prob"])),
                  v2.RandomHorizontalFlip(float(cfg["flip_prob"]))]
        if self.crop_size is not None:  # smaller images are padded (image 0, depth 0 = invalid)
            steps += [PadTo(self.crop_size, 0.0), RandomCrop(self.crop_size)]
        color = cfg["color_aug"]
        if color:
            steps.append(ImageOnly(partial(color_aug, c={**COLOR_AUG_DEFAULTS, **(color if isinstance(color, dict)
                                                                                  else {})})))
        super().__init__([*steps, normalize(mean, std)], keys=("image", "depth"))


class DepthEvalTransform(JointTransform):
    """Normalise the image ([NYU crop of both], [resize of the image only]); depth keeps its size."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        cfg = reader_options(DepthEvalConfig, cfg, "transform.eval", drop=())
        steps = _fixed_crop(cfg["fixed_crop"])
        self.scale = cfg["scale"]
        if self.scale is not None:
            steps.append(Rescale(_scale_to(self.scale), images_only=True))
        super().__init__([*steps, normalize(mean, std)], keys=("image", "depth"))


def build_seg_train_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> SegTrainTransform:
    """Training transform for segmentation; keys ``scale, ratio_range, crop_size, cat_max_ratio,
    flip_prob, photometric (bool | dict), ignore_index``."""
    return SegTrainTransform(dict(cfg or {}), mean, std)


def build_seg_eval_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> SegEvalTransform:
    """Evaluation transform for segmentation; key ``scale`` (None = original size)."""
    return SegEvalTransform(dict(cfg or {}), mean, std)


def build_depth_train_transform(cfg: dict[str, Any], mean: Sequence[float],
                                std: Sequence[float]) -> DepthTrainTransform:
    """Training transform for depth; keys ``fixed_crop ('nyu'|None), scale, crop_size, rotation_deg,
    rotation_prob, flip_prob, color_aug (bool | dict)``."""
    return DepthTrainTransform(dict(cfg or {}), mean, std)


def build_depth_eval_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> DepthEvalTransform:
    """Evaluation transform for depth; keys ``fixed_crop``, ``scale`` (image only)."""
    return DepthEvalTransform(dict(cfg or {}), mean, std)

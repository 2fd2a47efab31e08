"""Joint image + target transforms for the dense protocols (DINOv3 / mmseg semantics, torch RNG).

They act on the sample dicts of :mod:`dinobench.data.dense` (``image`` float [3, H, W] in [0, 1],
``mask`` long [H, W] or ``depth`` float [H, W]) and return a new dict. All randomness comes from
torch's global RNG (DataLoader workers get derived seeds), so a seeded run repeats exactly.

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
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

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
def _uniform(lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand(()).item())


def _coin(p: float) -> bool:
    return bool(torch.rand(()).item() < p)


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


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of a [C, H, W] float image."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def resize_nearest(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an [H, W] mask or depth map (no value is invented)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    out = F.interpolate(target[None, None].float(), size=size, mode="nearest")[0, 0]
    return out.to(target.dtype)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(image - mean) / std`` per channel (``mean``/``std`` on the [0, 1] scale)."""
    m = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - m) / s


def _random_offsets(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    oy = int(torch.randint(0, max(height - crop[0], 0) + 1, ()).item())
    ox = int(torch.randint(0, max(width - crop[1], 0) + 1, ()).item())
    return oy, ox


def _pad_to(t: torch.Tensor, size: tuple[int, int], value: float) -> torch.Tensor:
    dh, dw = max(size[0] - t.shape[-2], 0), max(size[1] - t.shape[-1], 0)
    return F.pad(t, (0, dw, 0, dh), value=value) if dh or dw else t


def photometric_distortion(image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """DINOv3/mmseg PhotoMetricDistortion on a [0, 1] image: brightness, contrast (first or last),
    saturation, hue -- each applied with probability 0.5."""
    p = {**PHOTOMETRIC_DEFAULTS, **params}
    if _coin(0.5):
        image = (image + _uniform(-p["brightness_delta"], p["brightness_delta"]) / 255.0).clamp(0, 1)
    contrast_first = _coin(0.5)

    def contrast(img: torch.Tensor) -> torch.Tensor:
        return (img * _uniform(*p["contrast_range"])).clamp(0, 1) if _coin(0.5) else img

    if contrast_first:
        image = contrast(image)
    if _coin(0.5):
        image = TF.adjust_saturation(image, _uniform(*p["saturation_range"])).clamp(0, 1)
    if _coin(0.5):
        image = TF.adjust_hue(image, _uniform(*p["hue_range"]))
    if not contrast_first:
        image = contrast(image)
    return image


def nyu_fixed_crop(t: torch.Tensor) -> torch.Tensor:
    """DINOv3's NYUCrop (x 43:608, y 45:472 on 480x640), bounds scaled proportionally to the size."""
    h, w = t.shape[-2:]
    x1, y1, x2, y2 = NYU_TRAIN_CROP_480x640
    return t[..., int(y1 / 480 * h):int(y2 / 480 * h), int(x1 / 640 * w):int(x2 / 640 * w)]


# ----------------------------------------------------------------------------- segmentation
class SegTrainTransform:
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
        self.mean, self.std = tuple(mean), tuple(std)
        scaled_size(64, 64, self.scale)  # validate early

    def _crop_box(self, mask: torch.Tensor) -> tuple[int, int]:
        h, w = mask.shape
        oy, ox = _random_offsets(h, w, self.crop_size)
        if self.cat_max_ratio < 1.0:  # mmseg: up to 10 tries for a crop no class dominates
            for _ in range(10):
                crop = mask[oy:oy + self.crop_size[0], ox:ox + self.crop_size[1]]
                _, counts = torch.unique(crop[crop != self.ignore_index], return_counts=True)
                if len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                    break
                oy, ox = _random_offsets(h, w, self.crop_size)
        return oy, ox

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        size = scaled_size(*image.shape[-2:], self.scale, _uniform(*self.ratio_range))
        image, mask = resize_image(image, size), resize_nearest(mask, size)
        oy, ox = self._crop_box(mask)
        ch, cw = self.crop_size
        image, mask = image[:, oy:oy + ch, ox:ox + cw], mask[oy:oy + ch, ox:ox + cw]
        if _coin(self.flip_prob):
            image, mask = image.flip(-1), mask.flip(-1)
        if self.photometric is not None:
            image = photometric_distortion(image, self.photometric)
        image = normalize(image, self.mean, self.std)
        image, mask = _pad_to(image, self.crop_size, 0.0), _pad_to(mask, self.crop_size, self.ignore_index)
        return {**sample, "image": image.contiguous(), "mask": mask.contiguous()}


class SegEvalTransform:
    """Resize the image to ``scale`` (keep ratio; None = keep) and normalise; the mask is untouched."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        self.scale = reader_options(SegEvalConfig, cfg, "transform.eval", drop=())["scale"]
        self.mean, self.std = tuple(mean), tuple(std)
        scaled_size(64, 64, self.scale)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = resize_image(sample["image"], scaled_size(*sample["image"].shape[-2:], self.scale))
        return {**sample, "image": normalize(image, self.mean, self.std)}


# ----------------------------------------------------------------------------- depth
class DepthTrainTransform:
    """[NYU crop] -> [resize] -> rotation (p=0.5) -> flip -> random crop -> colour aug -> normalise."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        cfg = reader_options(DepthTrainConfig, cfg, "transform.train", drop=())
        self.fixed_crop = cfg["fixed_crop"]
        if self.fixed_crop not in (None, "nyu", "NYU", "full", "FULL"):
            raise ConfigError(f"transform fixed_crop={self.fixed_crop!r}: expected 'nyu' or None")
        self.scale = cfg["scale"]
        self.crop_size = _pair(cfg["crop_size"], "crop_size") if cfg["crop_size"] else None
        self.rotation_deg = float(cfg["rotation_deg"])
        self.rotation_prob = float(cfg["rotation_prob"])
        self.flip_prob = float(cfg["flip_prob"])
        color = cfg["color_aug"]
        self.color_aug = {**COLOR_AUG_DEFAULTS, **(color if isinstance(color, dict) else {})} if color else None
        self.mean, self.std = tuple(mean), tuple(std)

    def _color(self, image: torch.Tensor) -> torch.Tensor:
        c = self.color_aug
        if not _coin(c["prob"]):
            return image
        s = float(c["gamma_scale"])
        image = (image * s) ** _uniform(*c["gamma_range"]) / s
        image = image * _uniform(*c["brightness_range"])
        colours = torch.tensor([_uniform(*c["color_range"]) for _ in range(3)], dtype=image.dtype)
        return (image * colours.view(3, 1, 1)).clamp(0, 1)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, depth = sample["image"], sample["depth"]
        if self.fixed_crop in ("nyu", "NYU"):
            image, depth = nyu_fixed_crop(image), nyu_fixed_crop(depth)
        if self.scale is not None:
            size = scaled_size(*image.shape[-2:], self.scale)
            image, depth = resize_image(image, size), resize_nearest(depth, size)
        if self.rotation_deg > 0 and _coin(self.rotation_prob):
            angle = _uniform(-self.rotation_deg, self.rotation_deg)
            image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=[0.0])
            depth = TF.rotate(depth[None], angle, interpolation=InterpolationMode.NEAREST, fill=[0.0])[0]
        if _coin(self.flip_prob):
            image, depth = image.flip(-1), depth.flip(-1)
        if self.crop_size is not None:  # smaller images are padded (image 0, depth 0 = invalid)
            image, depth = _pad_to(image, self.crop_size, 0.0), _pad_to(depth, self.crop_size, 0.0)
            oy, ox = _random_offsets(*image.shape[-2:], self.crop_size)
            ch, cw = self.crop_size
            image, depth = image[:, oy:oy + ch, ox:ox + cw], depth[oy:oy + ch, ox:ox + cw]
        if self.color_aug is not None:
            image = self._color(image)
        image = normalize(image, self.mean, self.std)
        return {**sample, "image": image.contiguous(), "depth": depth.contiguous()}


class DepthEvalTransform:
    """Normalise the image ([NYU crop of both], [resize of the image only]); depth keeps its size."""

    def __init__(self, cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> None:
        cfg = reader_options(DepthEvalConfig, cfg, "transform.eval", drop=())
        self.fixed_crop = cfg["fixed_crop"]
        if self.fixed_crop not in (None, "nyu", "NYU", "full", "FULL"):
            raise ConfigError(f"transform fixed_crop={self.fixed_crop!r}: expected 'nyu' or None")
        self.scale = cfg["scale"]
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, depth = sample["image"], sample["depth"]
        if self.fixed_crop in ("nyu", "NYU"):
            image, depth = nyu_fixed_crop(image), nyu_fixed_crop(depth)
        if self.scale is not None:
            image = resize_image(image, scaled_size(*image.shape[-2:], self.scale))
        return {**sample, "image": normalize(image, self.mean, self.std).contiguous(), "depth": depth}


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

"""Classification transforms built from a task's ``transform`` config and the backbone's normalisation:
the eval transform (features, cached) and the official train augmentation (linear probe on the fly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms import InterpolationMode, v2

from dinobench.errors import ConfigError
from dinobench.typed_config import reader_options

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


# ----------------------------------------------------------------------------- transform sections
# The ``transform`` section a task's datasets read, one dataclass per kind of sample (declared by each reader's
# registration, ``registry.add(..., transform=...)``): the runner refuses a key none of them has, naming the
# closest valid one. Sizes are pixels; their ranges are checked where the transform is built.


@dataclass
class ImageTransformConfig:
    """Whole images (classification, retrieval, captions): resize -> centre crop, or the longer side."""

    resize: int | None = None  # shorter side; None/0: no resize
    crop: int | None = None  # centre crop side; None/0: no crop
    max_size: int | None = None  # longer side, aspect kept (instance retrieval); instead of resize
    interpolation: str = "bicubic"  # bilinear | bicubic | nearest


@dataclass
class ClipTransformConfig:
    """Video clips: shorter side ``resize``, then ``crop`` (both needed, crop <= resize)."""

    resize: int | None = None
    crop: int | None = None


@dataclass
class SquareTransformConfig:
    """Whole images resized to one ``size x size`` square (keypoint pairs, foreground, object discovery)."""

    size: int | None = None  # needed: the square side in pixels


@dataclass
class FrameTransformConfig:
    """Video frames for label propagation: shorter side ``short_side`` (rounded up to whole patches)."""

    short_side: int | None = None  # needed: e.g. 960 (the official notebook)


def _interpolation(cfg: dict[str, Any]) -> InterpolationMode:
    name = cfg["interpolation"]
    if not isinstance(name, str) or name not in INTERPOLATIONS:
        raise ConfigError(f"transform.interpolation: {name!r} is not one of {', '.join(sorted(INTERPOLATIONS))}")
    return INTERPOLATIONS[name]


def _size(cfg: dict[str, Any], key: str) -> int | None:
    value = cfg.get(key)
    if value is None or (isinstance(value, (bool, int, float, str)) and not value):
        return None  # absent, 0, False or "": no such step (as before)
    try:
        size = int(value)
        valid = not isinstance(value, bool) and size == float(value) and size >= 1
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(f"transform.{key}: {value!r} is not a positive whole number of pixels")
    return size


class ResizeLongSide:
    """Resize an image (PIL or ``[C, H, W]`` tensor) so that its longer side is ``max_size`` pixels, keeping the
    aspect ratio (the instance-retrieval convention: whole images, no crop; the images of a batch then differ in
    size)."""

    def __init__(self, max_size: int, interpolation: InterpolationMode) -> None:
        self.max_size, self.interpolation = int(max_size), interpolation

    def __call__(self, image: Any) -> Any:
        height, width = image.shape[-2:] if hasattr(image, "shape") else image.size[::-1]
        scale = self.max_size / max(width, height)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return v2.functional.resize(image, list(size), interpolation=self.interpolation, antialias=True)

    def __repr__(self) -> str:
        return f"ResizeLongSide(max_size={self.max_size})"


def required_pixels(cfg: dict[str, Any], key: str, meaning: str, example: int) -> int:
    """``cfg[key]`` as a positive whole number of pixels a transform cannot do without; else a one-line
    ConfigError naming ``transform.<key>``, what it is and an example value."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"transform.{key}={value!r}: {meaning} in pixels is needed, e.g. transform.{key}={example}")
    return value


def build_eval_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Resize (short side, or long side with ``max_size``) -> centre crop -> tensor -> normalise
    (``mean``/``std`` of the backbone), as the official ``make_classification_eval_transform``
    (``dinov3/data/transforms.py``): the image becomes a uint8 tensor first and is resized as one (antialiased),
    which differs from PIL's resampling by up to one grey level.

    ``cfg``: ``resize`` (int), ``crop`` (int), ``max_size`` (int: longer side, aspect kept; instead of
    ``resize``), ``interpolation`` (bilinear|bicubic|nearest): :class:`ImageTransformConfig`.
    """
    cfg = reader_options(ImageTransformConfig, cfg, "transform", drop=(), typed=False)
    interpolation = _interpolation(cfg)
    resize, crop, max_size = _size(cfg, "resize"), _size(cfg, "crop"), _size(cfg, "max_size")
    if max_size and resize:
        raise ConfigError("transform: give either transform.resize (short side) or transform.max_size (long "
                          "side), not both; set the other to None")
    steps: list[Callable] = [v2.ToImage()]
    if max_size:
        steps.append(ResizeLongSide(max_size, interpolation))
    if resize:
        steps.append(v2.Resize(resize, interpolation=interpolation, antialias=True))
    if crop:
        steps.append(v2.CenterCrop(crop))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(steps)


def build_train_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float],
                          scale: Sequence[float] = (0.08, 1.0), hflip_prob: float = 0.5) -> Callable:
    """Official classification train augmentation (``make_classification_train_transform``): uint8 tensor ->
    RandomResizedCrop(``crop``, ``scale``) -> flip -> float -> normalise, at the eval crop size (``crop``, else
    ``resize``) and interpolation."""
    cfg = reader_options(ImageTransformConfig, cfg, "transform", drop=(), typed=False)
    interpolation = _interpolation(cfg)
    size = _size(cfg, "crop") or _size(cfg, "resize")
    if not size:
        raise ConfigError("transform.crop: the train augmentation needs the crop size (transform.crop or "
                          "transform.resize, in pixels)")
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=tuple(scale), interpolation=interpolation, antialias=True),
        v2.RandomHorizontalFlip(p=float(hflip_prob)),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])

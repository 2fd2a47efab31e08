"""Test-time views of a segmentation image, built as DINOv3's segmentation evaluation builds them.

Each scale ratio gives one view of the *original* image (not of an already resized one): short side
``int(scale * ratio)``, rounded up to a multiple of 32 when the ratio is below 1, long side in proportion (rounded
half up). The resize is PIL's bilinear filter on the 8-bit image and the normalisation acts on the 0..255 scale,
as the official pipeline does, so a view equals the official one bit for bit (the image samples of
:mod:`dinobench.data.dense` are 8-bit values / 255, recovered exactly). Mirrored views are left to the protocol
(a flip commutes with the normalisation). The label keeps its original size: predictions are resized to it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import PIL.Image
import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.v2 import functional as F

from dinobench.data.dense_transforms import scaled_size
from dinobench.errors import ConfigError


def tta_size(size: tuple[int, int], ratio: float, short_side: int | None = None) -> tuple[int, int]:
    """The official view size of an ``(H, W)`` image: short side ``int(short_side * ratio)`` (``short_side``
    default: the image's), rounded up to a multiple of 32 when ``ratio < 1``; long side in proportion, rounded half
    up."""
    h, w = size
    short = int((min(h, w) if short_side is None else short_side) * ratio)
    if ratio < 1:
        short = math.ceil(short / 32) * 32
    long = int(short * max(h, w) / min(h, w) + 0.5)
    return (long, short) if h > w else (short, long)


def view_size(size: tuple[int, int], scale: Any, ratio: float) -> tuple[int, int]:
    """``(H, W)`` of the ``ratio`` view for ``transform.eval.scale``: an int short side or None (the image's own)
    follow the official rule (:func:`tta_size`); a ``[long, short]`` pair is mmseg's keep-ratio rescale times
    ``ratio``."""
    if scale is None or isinstance(scale, int):
        return tta_size(size, ratio, scale)
    return scaled_size(size[0], size[1], scale, ratio)


def to_8bit(image: Tensor) -> PIL.Image.Image:
    """A float ``[3, H, W]`` image in [0, 1] as the 8-bit RGB PIL image it was read from."""
    return TF.to_pil_image((image * 255).round().clamp(0, 255).to(torch.uint8))


class SegTTAViews:
    """Evaluation transform of the multi-scale segmentation protocols: ``views`` = one normalised view per ratio
    (module docstring); ``image`` = the view of the ratio nearest 1 (what figures show); the rest untouched."""

    def __init__(self, scale: Any, ratios: Sequence[float], mean: Sequence[float], std: Sequence[float]) -> None:
        if not ratios or any(r <= 0 for r in ratios):
            raise ConfigError(f"protocol.inference.scales must be positive ratios, got {list(ratios)}")
        view_size((64, 64), scale, 1.0)  # a malformed scale fails now, not in a worker
        self.scale, self.ratios = scale, [float(r) for r in ratios]
        self.mean, self.std = [m * 255 for m in mean], [s * 255 for s in std]

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = to_8bit(sample["image"])
        size = (image.height, image.width)
        views = []
        for ratio in self.ratios:
            resized = TF.resize(image, list(view_size(size, self.scale, ratio)),
                                interpolation=InterpolationMode.BILINEAR)
            views.append(F.normalize(TF.pil_to_tensor(resized).float(), self.mean, self.std))
        nearest = min(range(len(views)), key=lambda i: abs(self.ratios[i] - 1.0))
        return {**sample, "image": views[nearest], "views": views}

    def __repr__(self) -> str:
        return f"SegTTAViews(scale={self.scale}, ratios={self.ratios})"

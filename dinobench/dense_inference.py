"""Dense prediction: whole-image and sliding-window inference and flip TTA, shared by the dense protocols.

``predict(images [B, 3, h, w]) -> [B, K, h, w]`` is any callable giving per-pixel outputs at its
input size (logits for segmentation, depth for depth). Sliding windows follow mmseg's
``slide_inference`` (and the official DINOv3 one): windows of ``crop_size`` every ``stride``
pixels, the last window of a row/column shifted back to end at the border, outputs summed and
divided by the per-pixel window count. A window larger than the image is clipped to it (mmseg); with
``square_small`` a window larger than the image on both sides becomes a square of the shorter side instead (the
official DINOv3 ``slide_inference``, which its multi-scale evaluation reaches at ratios below 1).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dinobench.errors import ConfigError

Predictor = Callable[[Tensor], Tensor]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def whole_inference(predict: Predictor, images: Tensor, out_size: Sequence[int] | None = None) -> Tensor:
    """One forward pass over the whole image; optionally resized (bilinear) to ``out_size``."""
    out = predict(images)
    if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
        out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
    return out


def slide_windows(height: int, width: int, crop_size: int | Sequence[int], stride: int | Sequence[int],
                  square_small: bool = False) -> list[tuple[int, int, int, int]]:
    """Windows ``(y1, y2, x1, x2)`` of mmseg's sliding-window inference covering the image (``square_small``: the
    official rule for an image smaller than the window on both sides, see the module docstring)."""
    crop_h, crop_w = _pair(crop_size)
    stride_h, stride_w = _pair(stride)
    if min(crop_h, crop_w, stride_h, stride_w) <= 0:
        raise ConfigError(f"protocol.inference: slide inference needs positive crop_size and stride, got "
                          f"{crop_size}, {stride}")
    if square_small and crop_h > height and crop_w > width:
        crop_h = crop_w = min(height, width)
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride_h + crop_h, height), min(c * stride_w + crop_w, width)
            windows.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return windows


def slide_inference(predict: Predictor, images: Tensor, num_outputs: int, crop_size: int | Sequence[int],
                    stride: int | Sequence[int], out_size: Sequence[int] | None = None,
                    square_small: bool = False) -> Tensor:
    """Sum of window outputs (in float32) divided by the window count per pixel ``[B, K, H, W]``."""
    batch, _, height, width = images.shape
    summed = images.new_zeros((batch, num_outputs, height, width), dtype=torch.float32)
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for y1, y2, x1, x2 in slide_windows(height, width, crop_size, stride, square_small):
        out = predict(images[:, :, y1:y2, x1:x2])
        if tuple(out.shape[-2:]) != (y2 - y1, x2 - x1):
            out = F.interpolate(out, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
        summed[:, :, y1:y2, x1:x2] += out.float()
        count[:, :, y1:y2, x1:x2] += 1
    out = summed / count
    if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
        out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
    return out


def flip_tta(predict: Predictor, images: Tensor) -> Tensor:
    """Average of the prediction and the flipped-back prediction of the flipped image
    (the official depth TTA, ``LeftRightFlipAug``)."""
    return (predict(images) + predict(images.flip(-1)).flip(-1)) / 2


def dense_predict(predict: Predictor, images: Tensor, *, mode: str = "whole", num_outputs: int | None = None,
                  crop_size: int | Sequence[int] = 512, stride: int | Sequence[int] = 341, flip: bool = False,
                  out_size: Sequence[int] | None = None, square_small: bool = False) -> Tensor:
    """Whole or sliding-window prediction (``mode``), optionally with flip TTA, resized to ``out_size``
    (``square_small``: see :func:`slide_windows`)."""
    if mode not in ("whole", "slide"):
        raise ConfigError(f"protocol.inference.mode must be 'whole' or 'slide', got {mode!r}")

    def once(x: Tensor) -> Tensor:
        if mode == "whole":
            return whole_inference(predict, x)
        if num_outputs is None:
            raise TypeError("slide inference needs num_outputs (number of output channels)")
        return slide_inference(predict, x, num_outputs, crop_size, stride, square_small=square_small)

    out = flip_tta(once, images) if flip else once(images)
    if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
        out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
    return out

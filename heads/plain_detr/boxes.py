"""Box arithmetic of Plain-DETR: format conversions, the box re-parameterisation (deltas relative to a
proposal, in absolute pixels) and the logit-space helpers of the non-reparameterised variant."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_convert

#: the largest log-ratio a width/height delta may have (``|log(16 / 1000)|``, as mmdet's ``delta2bbox``)
MAX_LOG_RATIO = abs(math.log(16 / 1000))


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h)`` -> ``(x0, y0, x1, y1)``."""
    return box_convert(boxes, "cxcywh", "xyxy")


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(x0, y0, x1, y1)`` -> ``(cx, cy, w, h)``."""
    return box_convert(boxes, "xyxy", "cxcywh")


def delta2bbox(proposals: Tensor, deltas: Tensor, max_shape: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """XYXY boxes from ``(cx, cy, w, h)`` proposals moved by ``(dx, dy, dw, dh)``: centre + ``(dx, dy) * wh``,
    size ``wh * exp(dwh)`` with ``dwh`` clamped to ``±MAX_LOG_RATIO``; clipped to ``max_shape = (H, W)``
    (tensors broadcasting against the boxes) when given."""
    centre, size = proposals[..., :2], proposals[..., 2:]
    new_centre = centre + size * deltas[..., :2]
    new_size = size * deltas[..., 2:].clamp(min=-MAX_LOG_RATIO, max=MAX_LOG_RATIO).exp()
    boxes = torch.cat([new_centre - 0.5 * new_size, new_centre + 0.5 * new_size], dim=-1)
    if max_shape is not None:
        height, width = max_shape
        x = boxes[..., 0::2].clamp(min=0)
        y = boxes[..., 1::2].clamp(min=0)
        x = torch.minimum(x, width.to(x.dtype)) if isinstance(width, Tensor) else x.clamp(max=width)
        y = torch.minimum(y, height.to(y.dtype)) if isinstance(height, Tensor) else y.clamp(max=height)
        boxes = torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
    return boxes


def bbox2delta(proposals: Tensor, targets: Tensor, pairwise: bool = False) -> Tensor:
    """The deltas taking ``(cx, cy, w, h)`` proposals to ``(cx, cy, w, h)`` targets (the inverse of
    :func:`delta2bbox` up to the 0.1 px guard against empty proposals): row by row for matched pairs, or every
    proposal against every target with ``pairwise`` (``[N, 4]`` x ``[M, 4]`` -> ``[N, M, 4]``, also when N == M:
    said explicitly, never guessed from the shapes)."""
    if pairwise:
        proposals, targets = proposals[:, None], targets[None]
    elif proposals.shape != targets.shape:
        raise ValueError(f"bbox2delta: {tuple(proposals.shape)} proposals and {tuple(targets.shape)} targets are "
                         f"not pairs; pass pairwise=True for every proposal against every target")
    proposals, targets = proposals.float(), targets.float()
    pw, ph = proposals[..., 2] + 0.1, proposals[..., 3] + 0.1
    return torch.stack([(targets[..., 0] - proposals[..., 0]) / pw, (targets[..., 1] - proposals[..., 1]) / ph,
                        torch.log(targets[..., 2] / pw), torch.log(targets[..., 3] / ph)], dim=-1)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``logit(x)`` with ``x`` clamped to [0, 1] and both ``x`` and ``1 - x`` to at least ``eps``."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))

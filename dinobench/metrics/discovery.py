"""Unsupervised object discovery metric: CorLoc, the percentage of images whose predicted box overlaps some
ground-truth box with IoU >= 0.5 (LOST / TokenCut evaluation)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one XYXY box with each of ``boxes`` ``[T, 4]`` (continuous coordinates; torchvision, float64)."""
    one = torch.as_tensor(np.asarray(box, dtype=np.float64).reshape(1, 4))
    return torchvision.ops.box_iou(one, torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)))[0].numpy()


def corloc(predictions: list[np.ndarray], truths: list[np.ndarray], threshold: float = 0.5) -> tuple[float, np.ndarray]:
    """CorLoc in % and the per-image hits: a prediction hits when its IoU with any true box is >= ``threshold``."""
    hits = np.array([bool(len(t)) and bool((box_iou(p, t) >= threshold).any()) for p, t in zip(predictions, truths)])
    return 100.0 * float(hits.mean()) if len(hits) else 0.0, hits

"""Unsupervised object discovery metric: CorLoc, the percentage of images whose predicted box overlaps some
ground-truth box with IoU >= 0.5, with the IoU of the LOST / TokenCut evaluation code.

Both reference repositories score with the same function (valeoai/LOST ``datasets.py:282-334`` ``bbox_iou``,
YangtaoWANG95/TokenCut ``datasets.py:289-341``, taken from YOLOv5) and the same decision (LOST
``main_lost.py:323-326``, TokenCut ``main_tokencut.py:295-298``: a hit when any IoU is ``>= 0.5``). That IoU
is not the textbook one: continuous coordinates (no +1 pixel), but ``eps = 1e-7`` is added to both heights and
to the union, so a box pair whose exact IoU is 0.5 scores just below 0.5 in float64 (a miss), and tiny boxes
score far below their exact IoU. The arithmetic runs in the dtype torch promotes the inputs to: integer boxes
(LOST's and TokenCut's own ViT predictions and ground truth are integer arrays) give float32, where the eps
terms vanish for heights >= 2 and an exact 0.5 is a hit again. :func:`box_iou` keeps the inputs' dtypes so that
it decides as the reference does on the same arrays.
"""

from __future__ import annotations

import numpy as np
import torch

#: the eps of the reference bbox_iou (added to each box height and to the union)
IOU_EPS = 1e-7


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one XYXY box with each of ``boxes`` ``[T, 4]``, as LOST / TokenCut compute it (see the module
    docstring): float32 for integer inputs, float64 for float64 ones (torch's promotion of the two arrays)."""
    one = torch.as_tensor(np.asarray(box)).reshape(4)
    many = torch.as_tensor(np.asarray(boxes)).reshape(-1, 4).T  # rows: x1, y1, x2, y2 of every box
    # 0-d coordinates of ``one`` against 1-d rows of ``many``: the reference's shapes, hence its promotion
    overlap_w = (torch.minimum(one[2], many[2]) - torch.maximum(one[0], many[0])).clamp(0)
    overlap_h = (torch.minimum(one[3], many[3]) - torch.maximum(one[1], many[1])).clamp(0)
    inter = overlap_w * overlap_h
    area_one = (one[2] - one[0]) * (one[3] - one[1] + IOU_EPS)
    area_many = (many[2] - many[0]) * (many[3] - many[1] + IOU_EPS)
    return (inter / (area_one + area_many - inter + IOU_EPS)).numpy()


def corloc(predictions: list[np.ndarray], truths: list[np.ndarray], threshold: float = 0.5) -> tuple[float, np.ndarray]:
    """CorLoc in % (``100 * hits / images``, main_lost.py:344's arithmetic) and the per-image hits: a prediction
    hits when its :func:`box_iou` with any true box is ``>= threshold``; an image without true boxes is a miss (the
    references skip such images beforehand)."""
    hits = np.array([bool(len(t)) and bool((box_iou(p, t) >= threshold).any()) for p, t in zip(predictions, truths)])
    return 100.0 * int(hits.sum()) / len(hits) if len(hits) else 0.0, hits

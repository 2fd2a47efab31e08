"""Keypoint-correspondence metrics (SPair-71k's convention): PCK@alpha, a keypoint is correct when its error is
at most alpha times the larger side of the target object's box (else of the target image)."""

from __future__ import annotations

import numpy as np


def pck_threshold(bbox: tuple[float, float, float, float] | None, target_size: tuple[int, int]) -> float:
    """The PCK normaliser: the target box's larger side, else the target image's larger side."""
    if bbox is None:
        return float(max(target_size))
    x1, y1, x2, y2 = bbox
    return float(max(x2 - x1, y2 - y1))


def pck(normalised_errors: np.ndarray, alpha: float) -> float:
    """Percentage of keypoints whose error divided by :func:`pck_threshold` is at most ``alpha``."""
    return 100.0 * float((np.asarray(normalised_errors) <= alpha).mean())

"""Keypoint-correspondence metrics (SPair-71k's convention, as DIFT's ``eval_spair.py`` scores it): PCK@alpha, a
keypoint is correct when its error divided by the larger side of the target object's box is at most alpha.

The reference (Tsingularity/dift ``eval_spair.py``) takes ``max(y2 - y1, x2 - x1)`` of ``trg_bndbox`` in the
original image's pixels, no +1 (line 100), and counts ``dist / threshold <= alpha`` (line 122): an error of
exactly alpha times the box is correct. (GeoAware-SC's ``pck_train.py`` and Probe3D's
``evaluate_spair_correspondence.py`` count ``<`` in their resized frames; dinobench follows DIFT.) Without a box
the normaliser is the target image's larger side.
"""

from __future__ import annotations

import numpy as np


def pck_threshold(bbox: tuple[float, float, float, float] | None, target_size: tuple[int, int]) -> float:
    """The PCK normaliser: the target box's larger side (eval_spair.py:100), else the target image's larger side."""
    if bbox is None:
        return float(max(target_size))
    x1, y1, x2, y2 = bbox
    return float(max(x2 - x1, y2 - y1))


def correct_fraction(normalised_errors: np.ndarray, alpha: float) -> float:
    """Share of keypoints whose error divided by :func:`pck_threshold` is at most ``alpha`` (the division first,
    then ``<=``, as eval_spair.py:122 compares); correct / total, the reference's per-pair value (line 127)."""
    return float((np.asarray(normalised_errors) <= alpha).mean())


def pck(normalised_errors: np.ndarray, alpha: float) -> float:
    """:func:`correct_fraction` in percent."""
    return 100.0 * correct_fraction(normalised_errors, alpha)

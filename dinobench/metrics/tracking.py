"""Video object segmentation metrics as the DAVIS benchmark (``davis2017-evaluation``) defines them.

- Void (255) is background, as in the official semi-supervised evaluation (``davis2017/davis.py`` ``get_all_masks``
  zeroes it, line 90; ``evaluation.py`` line 90 gives ``_evaluate_semisupervised`` no void mask): predicting on
  it is a false positive. ``exclude_void=True`` leaves it out of J and F instead (not the official numbers).
- J (region similarity): IoU of the object's predicted and true masks; 1 when both are empty.
- F (contour accuracy): boundary F-measure. Boundaries are the one-pixel maps of ``seg2bmap`` (a pixel is
  a boundary pixel when it differs from its right, lower or lower-right neighbour; in the last row only
  the right one counts, in the last column the lower one, the corner never); a boundary pixel is matched
  when the other mask's boundary, dilated by a disk of radius ``ceil(0.008 * image diagonal)``, covers
  it; precision / recall over the boundary pixels (an empty boundary against a non-empty one: precision
  1 / recall 0 or the reverse; both empty: 1 / 1), F their harmonic mean (0 when both are 0).
- Per object over the evaluated frames (semi-supervised: every frame but the first and the last):
  mean, recall (share of frames above 0.5) and decay (mean of the first of four frame bins minus mean of
  the last, bins as ``db_statistics`` cuts them); the dataset means are over objects, J&F their average.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

VOID_LABEL = 255


def region_similarity(truth: np.ndarray, prediction: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one frame: IoU of two boolean masks outside ``void``; 1 when the union is empty."""
    truth, prediction = np.asarray(truth, dtype=bool), np.asarray(prediction, dtype=bool)
    keep = np.ones_like(truth) if void is None else ~np.asarray(void, dtype=bool)
    union = np.sum((truth | prediction) & keep)
    return 1.0 if union == 0 else float(np.sum(truth & prediction & keep) / union)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a boolean mask (see the module docstring)."""
    seg = np.asarray(mask, dtype=bool)
    right, below, diagonal = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    right[:, :-1], below[:-1, :], diagonal[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    boundary = (seg ^ right) | (seg ^ below) | (seg ^ diagonal)
    boundary[-1, :] = seg[-1, :] ^ right[-1, :]
    boundary[:, -1] = seg[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def disk(radius: int) -> np.ndarray:
    """Boolean disk ``x^2 + y^2 <= r^2`` of side ``2r + 1`` (scikit-image's ``disk``)."""
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def boundary_f(truth: np.ndarray, prediction: np.ndarray, void: np.ndarray | None = None,
               bound_th: float = 0.008) -> float:
    """F of one frame (see the module docstring); ``bound_th`` >= 1 is a radius in pixels."""
    truth, prediction = np.asarray(truth, dtype=bool), np.asarray(prediction, dtype=bool)
    keep = np.ones_like(truth) if void is None else ~np.asarray(void, dtype=bool)
    radius = int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*truth.shape)))
    pred_b, true_b = seg2bmap(prediction & keep), seg2bmap(truth & keep)
    structure = disk(radius)
    pred_dil = ndimage.binary_dilation(pred_b, structure=structure)
    true_dil = ndimage.binary_dilation(true_b, structure=structure)
    n_pred, n_true = int(pred_b.sum()), int(true_b.sum())
    if n_pred == 0 and n_true == 0:
        precision = recall = 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_true == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = float(np.sum(pred_b & true_dil) / n_pred)
        recall = float(np.sum(true_b & pred_dil) / n_true)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame values, as DAVIS's ``db_statistics``."""
    values = np.asarray(per_frame, dtype=np.float64)
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    recall = float(np.nanmean(values > 0.5)) if len(values) else math.nan
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
    first, last = bins[0][np.isfinite(bins[0])], bins[3][np.isfinite(bins[3])]
    decay = float(first.mean() - last.mean()) if len(first) and len(last) else math.nan
    return mean, recall, decay


def sequence_scores(truth: np.ndarray, prediction: np.ndarray, bound_th: float = 0.008,
                    semi_supervised: bool = True, exclude_void: bool = False) -> dict[str, np.ndarray]:
    """Per-object, per-frame J and F ``[objects, frames]`` of id maps ``[T, H, W]`` (objects 1..max id of the
    first true frame, 255 = void); semi-supervised: frames 1..T-2. Void is background unless ``exclude_void``
    (see the module docstring)."""
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"DAVIS metrics: truth {truth.shape} and prediction {prediction.shape} differ in shape")
    n_objects = int(truth[0][truth[0] != VOID_LABEL].max(initial=0))
    frames = range(1, len(truth) - 1) if semi_supervised else range(len(truth))
    j = np.zeros((n_objects, len(frames)))
    f = np.zeros((n_objects, len(frames)))
    for column, t in enumerate(frames):
        void = truth[t] == VOID_LABEL if exclude_void else None
        for k in range(n_objects):
            j[k, column] = region_similarity(truth[t] == k + 1, prediction[t] == k + 1, void)
            f[k, column] = boundary_f(truth[t] == k + 1, prediction[t] == k + 1, void, bound_th)
    return {"J": j, "F": f}


def davis_summary(per_sequence: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Dataset metrics (in %: J/F mean, recall, decay over all objects; J&F) and one row per object."""
    rows, stats = [], {"J": [], "F": []}
    for sequence, scores in per_sequence.items():
        for k in range(scores["J"].shape[0]):
            row: dict[str, Any] = {"sequence": sequence, "object": k + 1}
            for name in ("J", "F"):
                m, r, d = statistics(scores[name][k])
                stats[name].append((m, r, d))
                row.update({f"{name}_mean": 100 * m, f"{name}_recall": 100 * r, f"{name}_decay": 100 * d})
            rows.append(row)
    if not rows:
        raise ValueError("DAVIS metrics: no object to evaluate (the first annotations hold no object id)")
    metrics: dict[str, float] = {}
    for name in ("J", "F"):
        values = np.asarray(stats[name], dtype=np.float64)
        for column, stat in enumerate(("mean", "recall", "decay")):
            metrics[f"{name}_{stat}"] = 100 * float(np.nanmean(values[:, column]))
    metrics["J&F"] = (metrics["J_mean"] + metrics["F_mean"]) / 2
    return metrics, rows

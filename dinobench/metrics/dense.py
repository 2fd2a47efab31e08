"""Dense evaluation metrics: segmentation through mmsegmentation's ``IoUMetric``; monocular depth
as the official DINOv3 / BTS evaluation computes it.

* :class:`SegmentationMetric` feeds every (prediction, label) pair to ``IoUMetric.process`` and
  reads mIoU / aAcc / mAcc (percent, rounded to 2 decimals by mmseg) from ``compute_metrics``:
  intersections and unions are summed over the whole split, classes absent from both prediction
  and label (NaN IoU) are left out of the mean, pixels equal to ``ignore_index`` are not counted.
* :class:`DepthMetric` computes a1/a2/a3, abs_rel, sq_rel, rmse, rmse_log, log10, silog, mae per
  image over the valid pixels (``min_depth < gt < max_depth``, inside the Eigen crop when asked),
  with the prediction bilinearly resized to the ground truth's size and clamped to
  ``[min_depth, max_depth]``, then averages each metric over images (NaN-aware), like DINOv3's
  ``evaluate_depther_with_dataloader``. a1..a3 are fractions in [0, 1]; silog is x100. With
  ``align_least_squares`` each prediction is first fitted in scale and shift to its ground truth (relative depth).

Both are mergeable (``state()`` / ``merge(states)``), so that
:func:`dinobench.training.evaluate_sharded` gives on N ranks exactly the single-process numbers:
segmentation areas are summed as exact integers, depth means are exactly rounded sums (``math.fsum``),
which do not depend on the order of the images.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmseg.evaluation import IoUMetric

#: NYU-Depth v2 Eigen evaluation crop on the 480x640 frame: rows 45:471, cols 41:601
EIGEN_CROP_480x640 = (45, 471, 41, 601)
DEPTH_METRIC_NAMES = ("a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mae")
#: whether a larger value is better, per depth metric
DEPTH_HIGHER_IS_BETTER = {name: name in ("a1", "a2", "a3") for name in DEPTH_METRIC_NAMES}


def eigen_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """Eigen crop ``(y0, y1, x0, x1)`` for an ``height x width`` image.

    480x640 gives rows 45:471, cols 41:601; other sizes scale each bound proportionally and
    truncate (``int(45 / 480 * height)`` ...), exactly as DINOv3's ``make_valid_mask`` does.
    """
    y0, y1, x0, x1 = EIGEN_CROP_480x640
    return int(y0 / 480 * height), int(y1 / 480 * height), int(x0 / 640 * width), int(x1 / 640 * width)


def eigen_crop_mask(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean [height, width] mask that is True inside :func:`eigen_crop_box`."""
    y0, y1, x0, x1 = eigen_crop_box(height, width)
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[y0:y1, x0:x1] = True
    return mask


class SegmentationMetric:
    """Accumulates per-image intersections/unions with mmseg ``IoUMetric``; ``compute`` -> mIoU, aAcc, mAcc (%)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self._metric = IoUMetric(ignore_index=self.ignore_index, iou_metrics=["mIoU"], prefix="seg")
        self._metric.dataset_meta = {"classes": self.class_names}
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        #: summed (intersection, union, predicted, label) pixel counts per class, exact integers
        self._areas = torch.zeros(4, self.num_classes, dtype=torch.int64)
        self.num_images = 0

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add one image: ``pred`` and ``label`` are integer class maps [H, W] (label may hold ``ignore_index``)."""
        if pred.shape != label.shape or pred.dim() != 2:
            raise ValueError(f"pred {tuple(pred.shape)} and label {tuple(label.shape)} must both be [H, W]")
        areas = self._metric.intersect_and_union(pred.detach().long().cpu(), label.detach().long().cpu(),
                                                 self.num_classes, self.ignore_index)
        self._areas += torch.stack(areas).round().long()  # per-image counts are exact in float32 (< 2**24)
        self.num_images += 1

    def state(self) -> dict[str, Any]:
        """The accumulated areas and image count (for :meth:`merge` across ranks)."""
        return {"areas": self._areas.clone(), "num_images": self.num_images}

    def merge(self, states: Sequence[dict[str, Any]]) -> None:
        """Replace the state by the sum of ``states`` (e.g. every rank's :meth:`state`)."""
        self._areas = sum((s["areas"].long() for s in states), torch.zeros_like(self._areas))
        self.num_images = sum(int(s["num_images"]) for s in states)

    def areas(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed (intersection, union, predicted, label) pixel areas per class (float32, as mmseg's)."""
        return tuple(self._areas.float())  # type: ignore[return-value]

    def per_class_iou(self) -> dict[str, float]:
        """IoU (percent) of every class; NaN for a class absent from both predictions and labels."""
        inter, union, _, _ = self._areas.double()
        iou = (inter / union * 100).tolist()
        return dict(zip(self.class_names, iou))

    def compute(self) -> dict[str, float]:
        """``{"mIoU", "aAcc", "mAcc"}`` in percent, from ``IoUMetric.compute_metrics``."""
        if not self.num_images:
            raise ValueError("SegmentationMetric.compute() called before any update()")
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # IoUMetric prints a 150-row per-class table at INFO
        try:
            metrics = self._metric.compute_metrics([self.areas()])
        finally:
            logger.setLevel(level)
        return {key: round(float(metrics[key]), 2) for key in ("mIoU", "aAcc", "mAcc")}


def depth_metrics_one(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float] | None:
    """The ten metrics of one image over ``valid`` pixels (float64); None if no pixel is valid."""
    gt = gt[valid].double()
    pred = pred[valid].double()
    if gt.numel() == 0:
        return None
    ratio = torch.maximum(gt / pred, pred / gt)
    err = gt - pred
    log_err = torch.log(gt) - torch.log(pred)
    silog_var = torch.mean(log_err ** 2) - torch.mean(log_err) ** 2
    return {
        "a1": (ratio < 1.25).double().mean().item(),
        "a2": (ratio < 1.25 ** 2).double().mean().item(),
        "a3": (ratio < 1.25 ** 3).double().mean().item(),
        "abs_rel": torch.mean(torch.abs(err) / gt).item(),
        "sq_rel": torch.mean(err ** 2 / gt).item(),
        "rmse": torch.sqrt(torch.mean(err ** 2)).item(),
        "rmse_log": torch.sqrt(torch.mean(log_err ** 2)).item(),
        "log10": torch.mean(torch.abs(torch.log10(gt) - torch.log10(pred))).item(),
        "silog": math.sqrt(max(silog_var.item(), 0.0)) * 100,  # rounding can make a zero variance < 0
        "mae": torch.mean(torch.abs(err)).item(),
    }


def align_least_squares(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``scale * pred + shift`` with the (scale, shift) that minimise the squared error to ``gt`` over the ``valid``
    pixels: relative (scale- and shift-free) depth, as the official ``align_depth_least_square`` (from Marigold,
    ``dinov3/eval/depth/utils.py:15-71``) solves it with ``numpy.linalg.lstsq`` (the minimum-norm solution when the
    prediction is constant; scale 1, shift 0 if the solver fails)."""
    design = torch.stack([pred[valid], torch.ones_like(pred[valid])], dim=1).double().numpy()
    try:
        scale, shift = np.linalg.lstsq(design, gt[valid].double().numpy(), rcond=None)[0]
    except np.linalg.LinAlgError:
        scale, shift = 1.0, 0.0
    return pred * float(scale) + float(shift)


class DepthMetric:
    """Per-image depth metrics averaged over images (DINOv3 / BTS protocol; see module doc). ``align_least_squares``:
    each prediction is first aligned in scale and shift to its ground truth (:func:`align_least_squares`), the
    official evaluation of relative depth (the released SynthMix depther)."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0, eigen_crop: bool = False,
                 align_least_squares: bool = False) -> None:
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.min_depth, self.max_depth, self.eigen_crop = float(min_depth), float(max_depth), bool(eigen_crop)
        self.align = bool(align_least_squares)
        self.per_image: list[dict[str, float]] = []
        self.skipped = 0  # images without a single valid pixel

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.per_image.clear()
        self.skipped = 0

    def valid_mask(self, gt: torch.Tensor) -> torch.Tensor:
        """Pixels that count: ``min_depth < gt < max_depth`` (and inside the Eigen crop if set)."""
        valid = (gt > self.min_depth) & (gt < self.max_depth)
        if self.eigen_crop:
            valid &= eigen_crop_mask(*gt.shape[-2:], device=gt.device)
        return valid

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float] | None:
        """Add one image (depths in metres, [H, W]); returns its metrics (None if nothing was valid)."""
        if gt.dim() != 2 or pred.dim() != 2:
            raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be [H, W]")
        pred = pred.detach().double()
        gt = gt.detach().double()
        if pred.shape != gt.shape:
            pred = torch.nn.functional.interpolate(pred[None, None], size=gt.shape, mode="bilinear",
                                                   align_corners=False)[0, 0]
        valid = self.valid_mask(gt)
        if self.align:  # official order: resize, align on the valid pixels, clamp (dinov3/eval/depth/eval.py:150-166)
            pred = align_least_squares(pred, gt, valid)
        pred = pred.clamp(self.min_depth, self.max_depth)
        values = depth_metrics_one(pred, gt, valid)
        if values is None:
            self.skipped += 1
        else:
            self.per_image.append(values)
        return values

    def state(self) -> dict[str, Any]:
        """The per-image rows ``[N, 10]`` (float64) and the skipped count (for :meth:`merge` across ranks)."""
        rows = [[row[name] for name in DEPTH_METRIC_NAMES] for row in self.per_image]
        return {"rows": torch.tensor(rows, dtype=torch.float64).reshape(-1, len(DEPTH_METRIC_NAMES)),
                "skipped": self.skipped}

    def merge(self, states: Sequence[dict[str, Any]]) -> None:
        """Replace the state by the images of all ``states`` (e.g. every rank's :meth:`state`)."""
        self.per_image = [dict(zip(DEPTH_METRIC_NAMES, row)) for s in states for row in s["rows"].tolist()]
        self.skipped = sum(int(s["skipped"]) for s in states)

    def compute(self) -> dict[str, float]:
        """Mean over images of each metric (NaN-aware), in :data:`DEPTH_METRIC_NAMES` order.

        Each mean is an exactly rounded sum (``math.fsum``) over the count: the same whatever the order
        of the images (so N ranks give the single-process value bit for bit).
        """
        if not self.per_image:
            raise ValueError("DepthMetric.compute(): no image with valid ground truth was added")
        table = np.array([[row[name] for name in DEPTH_METRIC_NAMES] for row in self.per_image], dtype=np.float64)
        return {name: _exact_nanmean(table[:, j]) for j, name in enumerate(DEPTH_METRIC_NAMES)}


def _exact_nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN ``values`` from their exactly rounded sum (NaN when there are none)."""
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        return math.nan
    if not np.isfinite(kept).all():  # fsum refuses inf - inf; the plain sum says inf or nan
        return float(np.sum(kept) / kept.size)
    return math.fsum(kept.tolist()) / kept.size


# ----------------------------------------------------------------------------- binary foreground
def binary_miou(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """IoU of foreground (``scores >= threshold``) and of background against binary ``labels``; their mean."""
    pred, truth = np.asarray(scores) >= threshold, np.asarray(labels).astype(bool)
    out = {}
    for name, p, t in (("fg", pred, truth), ("bg", ~pred, ~truth)):
        union = np.logical_or(p, t).sum()
        out[f"IoU_{name}"] = float(np.logical_and(p, t).sum() / union) if union else 1.0
    out["mIoU"] = (out["IoU_fg"] + out["IoU_bg"]) / 2
    return out


def best_miou_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (one of the scores) maximising :func:`binary_miou` (the highest one among ties), exact
    over every distinct score via cumulative counts."""
    scores, truth = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).astype(bool).ravel()
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last of each run of equal scores: predict fg up to there
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    positives, negatives = t.sum(), (~t).sum()
    fn, tn = positives - tp, negatives - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou_fg = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
        iou_bg = np.where(tn + fn + fp > 0, tn / (tn + fn + fp), 1.0)
    return float(s[last][int(np.argmax(iou_fg + iou_bg))])


# ----------------------------------------------------------------------------- canopy height
class CanopyHeightMetric:
    """Pixel-level canopy-height errors in metres over every valid pixel of every tile: MAE, RMSE, R² and bias
    (mean of prediction - truth) - scikit-learn's ``mean_absolute_error`` / ``root_mean_squared_error`` /
    ``r2_score`` on the pooled pixels, kept as float64 sums so that tiles and ranks merge exactly."""

    def __init__(self, max_height: float = 96.0) -> None:
        self.max_height = float(max_height)
        self.sums = torch.zeros(6, dtype=torch.float64)  # n, sum e, sum |e|, sum e^2, sum y, sum y^2

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add one tile (``[H, W]`` metres; NaN in ``gt`` = no data); ``pred`` is resized to ``gt`` if needed
        and clamped to ``[0, max_height]``."""
        pred, gt = pred.detach().double(), gt.detach().double()
        if pred.shape != gt.shape:
            pred = torch.nn.functional.interpolate(pred[None, None], size=gt.shape[-2:], mode="bilinear",
                                                   align_corners=False)[0, 0]
        valid = torch.isfinite(gt)
        y, p = gt[valid], pred[valid].clamp(0.0, self.max_height)
        error = p - y
        self.sums += torch.stack([torch.tensor(float(y.numel()), dtype=torch.float64), error.sum(),
                                  error.abs().sum(), (error * error).sum(), y.sum(), (y * y).sum()])

    def state(self) -> dict[str, Any]:
        """The sums (for :meth:`merge` across ranks)."""
        return {"sums": self.sums.clone()}

    def merge(self, states: Sequence[dict[str, Any]]) -> None:
        """Replace the state by the sum of ``states`` (e.g. every rank's :meth:`state`)."""
        self.sums = torch.stack([s["sums"] for s in states]).sum(0)

    def compute(self) -> dict[str, float]:
        """MAE, RMSE, R², bias (m) and the pixel count."""
        n, s_err, s_abs, s_sq, s_y, s_y2 = self.sums.tolist()
        if n == 0:
            raise ValueError("CanopyHeightMetric.compute(): no tile with valid heights was added")
        total = s_y2 - s_y * s_y / n
        r2 = 1.0 - s_sq / total if total > 0 else (1.0 if s_sq == 0 else 0.0)  # r2_score's constant-truth rule
        return {"mae": s_abs / n, "rmse": math.sqrt(s_sq / n), "r2": r2, "bias": s_err / n, "pixels": n}

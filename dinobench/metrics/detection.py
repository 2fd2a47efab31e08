"""COCO box metrics through pycocotools: detections -> COCO result json -> ``COCOeval`` (iouType "bbox").

:class:`CocoMetric` collects per-image detections (XYXY pixel boxes of the original image, scores, labels
mapped back to category ids) and is mergeable across ranks (its state is the detection list). ``compute``
returns COCOeval's 12 summary numbers in percent - AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs,
ARm, ARl; NaN where pycocotools says -1 (no ground truth of that size) - and ``per_category_ap`` the AP at IoU 0.50:0.95 of each category (pycocotools' precision array,
-1 entries excluded, as its summary does).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import numpy as np
import torch

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def to_coco_detections(image_id: int, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                       label_to_category: Sequence[int]) -> list[dict[str, Any]]:
    """COCO result entries (``bbox`` = ``[x, y, w, h]``) of one image's XYXY detections."""
    xyxy = boxes.detach().float().cpu()
    xywh = torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).tolist()
    return [{"image_id": int(image_id), "category_id": int(label_to_category[int(label)]), "bbox": box,
             "score": float(score)} for box, score, label in zip(xywh, scores.tolist(), labels.tolist())]


class CocoMetric:
    """pycocotools COCOeval over the images of a ground-truth ``COCO`` object (see the module docstring)."""

    def __init__(self, coco_gt: Any, image_ids: Sequence[int], label_to_category: Sequence[int],
                 class_names: dict[int, str] | None = None) -> None:
        self.coco_gt, self.image_ids = coco_gt, [int(i) for i in image_ids]
        self.label_to_category = list(label_to_category)
        self.class_names = class_names or {}
        self.detections: list[dict[str, Any]] = []
        self._eval: Any = None

    def update(self, image_id: int, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one image's detections (XYXY pixels of the original image)."""
        self.detections += to_coco_detections(image_id, boxes, scores, labels, self.label_to_category)

    def state(self) -> dict[str, Any]:  # noqa: D102 - MergeableMetric
        return {"detections": self.detections}

    def merge(self, states: list[dict[str, Any]]) -> None:  # noqa: D102 - MergeableMetric
        self.detections = [d for s in states for d in s["detections"]]

    def evaluate(self) -> Any:
        """The accumulated ``COCOeval`` (cached until the next update)."""
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = self.coco_gt.loadRes(self.detections) if self.detections else None
            if coco_dt is None:
                return None
            evaluator = COCOeval(self.coco_gt, coco_dt, iouType="bbox")
            evaluator.params.imgIds = self.image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return evaluator

    def compute(self) -> dict[str, float]:
        """COCOeval's summary in percent (0 everywhere without any detection; NaN for an empty size range)."""
        self._eval = self.evaluate()
        if self._eval is None:
            return {name: 0.0 for name in STAT_NAMES}
        return {name: round(float(value) * 100, 2) if value >= 0 else float("nan")
                for name, value in zip(STAT_NAMES, self._eval.stats)}

    def per_category_ap(self) -> dict[str, float]:
        """AP (IoU 0.50:0.95, all areas, 100 detections) of each category, percent; NaN without ground truth."""
        evaluator = self._eval if self._eval is not None else self.evaluate()
        out = {}
        for k, cat in enumerate(sorted(self.coco_gt.cats)):
            name = str(self.coco_gt.cats[cat].get("name", cat))
            if evaluator is None:
                out[name] = 0.0
                continue
            precision = evaluator.eval["precision"][:, :, k, 0, -1]
            valid = precision[precision > -1]
            out[name] = round(float(np.mean(valid)) * 100, 2) if valid.size else float("nan")
        return out

"""Plain-DETR object detection on a frozen backbone, as released with DINOv3 - and trainable.

- :func:`build_plain_detr` - the detector with the official state-dict keys (``DetectionHeadConfig`` fields);
- :func:`postprocess` - top-k (query, class) pairs -> scores, labels, XYXY pixel boxes (official ``PostProcess``);
- :class:`PlainDetrCriterion` / :class:`HungarianMatcher` - hybrid-matching training losses (not in the release).
"""

from dinobench.heads.plain_detr.backbone import Padded
from dinobench.heads.plain_detr.criterion import HungarianMatcher, PlainDetrCriterion
from dinobench.heads.plain_detr.detector import HEAD_CONFIG_DEFAULTS, PlainDETR, build_plain_detr, postprocess

__all__ = ["HEAD_CONFIG_DEFAULTS", "HungarianMatcher", "Padded", "PlainDETR", "PlainDetrCriterion", "build_plain_detr",
           "postprocess"]

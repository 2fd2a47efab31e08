"""Keypoint correspondence with frozen patch features: nearest-neighbour transfer, PCK@alpha and recall at pixels.

Every image is resized to ``transform.size`` square and encoded once (last-block normalised patch tokens,
cached); with ``resolution`` the feature maps are bilinearly upsampled to ``resolution x resolution``
first. A source keypoint's feature is the one of the cell holding it; its match is the target cell of
highest cosine similarity (``refine="soft_argmax"``: the softmax(sim / ``soft_temperature``)-weighted mean
position over the ``2 * soft_window + 1`` cells around it), mapped back to target pixels (cell centres).
A keypoint is correct at alpha when its error is at most ``alpha * max(h, w)`` of the target box (SPair's
PCK@alpha_bbox; the image's larger side when the pair has no box) and at ``t`` pixels when it is at most t
(geometric correspondence, NAVI-style). ``PCK@a`` averages per-pair PCK over pairs, ``PCK@a_keypoints``
over all keypoints; a per-category table; ``mutual_rate``: share of keypoints whose match maps back to the
source cell it came from (mutual nearest neighbours).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from dinobench.context import RunContext
from dinobench.errors import ConfigError, DataError
from dinobench.metrics.correspondence import pck, pck_threshold
from dinobench.protocol import Protocol, ProtocolResult


@dataclass
class CorrespondenceConfig:
    """PCK at alpha 0.05 / 0.1 / 0.15 of the target box; plain nearest neighbours on the patch grid."""

    alphas: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.15])
    pixel_thresholds: list[float] = field(default_factory=list)  # recall at these target-pixel errors
    resolution: int | None = None  # upsample feature maps to this square size; None: the patch grid
    refine: Literal["none", "soft_argmax"] = "none"
    soft_window: int = 3
    soft_temperature: float = 0.04
    main_metric: str = "PCK@0.1"


def feature_map(features: Any, resolution: int | None) -> Tensor:
    """``[D, H, W]`` L2-normalised map of ``[h, w, D]`` patch features, upsampled to ``resolution`` if given."""
    fmap = torch.as_tensor(np.asarray(features)).float().permute(2, 0, 1)
    if resolution:
        fmap = F.interpolate(fmap[None], size=(resolution, resolution), mode="bilinear", align_corners=False)[0]
    return F.normalize(fmap, dim=0)


def match_keypoints(source: Tensor, target: Tensor, keypoints: np.ndarray, source_size: tuple[int, int],
                    target_size: tuple[int, int], refine: str = "none", window: int = 3,
                    temperature: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Predicted target points ``[K, 2]`` (x, y pixels) of source ``keypoints`` and whether each is a mutual match.

    ``source`` / ``target``: ``[D, H, W]`` normalised maps; sizes are the original images' ``(width, height)``."""
    _, gh, gw = target.shape
    sw, sh = source_size
    tw, th = target_size
    _, sgh, sgw = source.shape
    points = torch.as_tensor(keypoints, dtype=torch.float32)
    own = (points[:, 1] / sh * sgh).long().clamp(0, sgh - 1) * sgw + (points[:, 0] / sw * sgw).long().clamp(0, sgw - 1)
    sims = source.flatten(1)[:, own].T @ target.flatten(1)  # [K, gh * gw]: the keypoint's own cell vs every target cell
    best = sims.argmax(dim=1)
    by, bx = (best // gw).float(), (best % gw).float()
    if refine == "soft_argmax":
        ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32),
                                indexing="ij")
        inside = ((ys.flatten()[None] - by[:, None]).abs() <= window) & ((xs.flatten()[None] - bx[:, None]).abs() <= window)
        weights = torch.softmax((sims / temperature).masked_fill(~inside, -torch.inf), dim=1)
        by, bx = weights @ ys.flatten(), weights @ xs.flatten()
    predicted = torch.stack([(bx + 0.5) / gw * tw, (by + 0.5) / gh * th], dim=1).numpy().astype(np.float64)
    # mutual: the best source cell of the matched target cell is the keypoint's own source cell
    back = (target.flatten(1)[:, best].T @ source.flatten(1)).argmax(dim=1)
    return predicted, (back == own).numpy()


class CorrespondenceProtocol(Protocol):
    """Match every pair of the ``test`` split; PCK@alpha per pair, per keypoint and per category."""

    name = "correspondence"
    version = "1"
    Config = CorrespondenceConfig
    datasets = ("test",)

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if not cfg.alphas or min(cfg.alphas) <= 0 or any(t <= 0 for t in cfg.pixel_thresholds):
            raise ConfigError("correspondence: protocol.alphas (non-empty) and pixel_thresholds must be positive")
        if (cfg.resolution is not None and cfg.resolution < 1) or cfg.soft_window < 0 or cfg.soft_temperature <= 0:
            raise ConfigError("correspondence: protocol.resolution >= 1 (or None), soft_window >= 0, "
                              "soft_temperature > 0")
        names = [f"PCK@{a:g}" for a in cfg.alphas] + [f"PCK@{a:g}_keypoints" for a in cfg.alphas]
        names += [f"recall@{t:g}px" for t in cfg.pixel_thresholds]
        if cfg.main_metric not in names:
            raise ConfigError(f"correspondence: protocol.main_metric={cfg.main_metric!r}; choose one of "
                              f"{', '.join(names)}")

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Encode the images once, match every pair, aggregate."""
        cfg, dataset = self.config, ctx.dataset("test")
        pairs = getattr(dataset, "pairs", None)
        if pairs is None:
            raise DataError(f"task {ctx.task!r}: the test dataset has no keypoint pairs; use spair or pairs")
        features = ctx.features("test", "patch_tokens").features
        maps: dict[int, Tensor] = {}

        def fmap(index: int) -> Tensor:
            if index not in maps:
                maps[index] = feature_map(features[index], cfg.resolution)
            return maps[index]

        per_pair, per_category = defaultdict(list), defaultdict(lambda: defaultdict(list))
        errors_norm, errors_px, mutual = [], [], []
        for pair in tqdm(pairs, desc="correspondence pairs", unit="pair", leave=False):
            src_size, trg_size = dataset.sizes[pair.source], dataset.sizes[pair.target]
            predicted, is_mutual = match_keypoints(fmap(pair.source), fmap(pair.target), pair.source_keypoints,
                                                   src_size, trg_size, cfg.refine, cfg.soft_window,
                                                   cfg.soft_temperature)
            error = np.linalg.norm(predicted - pair.target_keypoints, axis=1)
            normalised = error / pck_threshold(pair.target_bbox, trg_size)
            for alpha in cfg.alphas:
                value = pck(normalised, alpha)
                per_pair[alpha].append(value)
                per_category[pair.category][alpha].append(value)
            errors_norm.append(normalised)
            errors_px.append(error)
            mutual.append(is_mutual)
        all_norm, all_px = np.concatenate(errors_norm), np.concatenate(errors_px)
        metrics: dict[str, float] = {}
        for alpha in cfg.alphas:
            metrics[f"PCK@{alpha:g}"] = float(np.mean(per_pair[alpha]))
            metrics[f"PCK@{alpha:g}_keypoints"] = pck(all_norm, alpha)
        for t in cfg.pixel_thresholds:
            metrics[f"recall@{t:g}px"] = 100.0 * float((all_px <= t).mean())
        metrics["mutual_rate"] = 100.0 * float(np.concatenate(mutual).mean())
        rows = [{"category": name, "pairs": len(values[cfg.alphas[0]]),
                 **{f"PCK@{a:g}": float(np.mean(values[a])) for a in cfg.alphas}}
                for name, values in sorted(per_category.items())]
        return ProtocolResult(metrics, cfg.main_metric, higher_is_better=True, tables={"per_category": rows})

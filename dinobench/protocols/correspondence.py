"""Keypoint correspondence with frozen patch features: nearest-neighbour transfer, PCK@alpha and recall at pixels.

Every image is resized to ``transform.size`` square and encoded once (last-block patch tokens, cached). By default
(``keypoint_convention="reference"``) pairs are matched as DIFT's SPair-71k evaluation does (Tsingularity/dift
``eval_spair.py``): both feature maps are bilinearly upsampled to their own image's original size (lines 94-95),
the source keypoint's feature is the upsampled map's at the keypoint's pixel (SPair keypoints are pixel indices,
line 113; other keypoints are rounded to the nearest pixel), both sides are L2-normalised per pixel (115-116),
and the match is the target pixel of highest cosine (ties: the first in row-major order, 119), whose integer
(column, row) is the prediction, with no half-pixel offset (121). ``keypoint_convention="cell_centre"`` is
dinobench v1's matching: on the L2-normalised patch grid (or its ``resolution`` upsampling), the source cell
holding the keypoint, and the matched cell's centre scaled to target pixels. ``refine="soft_argmax"`` replaces
the best cell (pixel) by the softmax(sim / ``soft_temperature``)-weighted mean position over the
``2 * soft_window + 1`` cells (pixels) around it.

A keypoint is correct at alpha when its error divided by ``max(h, w)`` of the target box is at most alpha
(eval_spair.py:100 and 122, in original target pixels; the image's larger side when the pair has no box), and
at ``t`` pixels when the error is at most t (geometric correspondence, NAVI-style). ``PCK@a`` averages per-pair
PCK over pairs (the reference's "per image"), ``PCK@a_keypoints`` over all keypoints ("per point"); a
per-category table; ``mutual_rate``: share of keypoints whose match maps back to the source cell (pixel) it came
from (mutual nearest neighbours).

The reference convention is computed without holding the ``D x H x W`` upsampled maps (interpolation is
linear: see :class:`_PixelMap`), in float64 with the float32 interpolation weights ``F.interpolate`` uses, on the
run's device. Its matches equal the reference's except where the reference's best pixels tie up to its own
float32 rounding (e.g. the band of border pixels past the last cell centre, where every pixel reads that cell):
there the reference's choice follows rounding noise, ours is the first pixel of the exact tie.
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
from dinobench.metrics.correspondence import correct_fraction, pck, pck_threshold
from dinobench.protocol import Protocol, ProtocolResult


@dataclass
class CorrespondenceConfig:
    """PCK at alpha 0.05 / 0.1 / 0.15 of the target box; plain nearest neighbours, matched as DIFT's SPair code."""

    alphas: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.15])
    pixel_thresholds: list[float] = field(default_factory=list)  # recall at these target-pixel errors
    resolution: int | None = None  # upsample feature maps to this square size; None: the patch grid
    refine: Literal["none", "soft_argmax"] = "none"
    soft_window: int = 3
    soft_temperature: float = 0.04
    # "reference": DIFT's eval_spair.py (see the module docstring; lines 94-121): pixel-level argmax on maps
    # upsampled to each image's size, prediction = the pixel index. "cell_centre": v1's patch-grid matching with
    # (cell + 0.5) * image / grid as the prediction (a half-cell offset and no interpolated source feature, so not
    # the reference's numbers); off by default, kept to compare with results of protocol version 1.
    keypoint_convention: Literal["reference", "cell_centre"] = "reference"
    main_metric: str = "PCK@0.1"


def feature_map(features: Any, resolution: int | None, normalise: bool = True) -> Tensor:
    """``[D, H, W]`` map of ``[h, w, D]`` patch features, upsampled to ``resolution`` if given, L2-normalised per
    cell unless ``normalise=False`` (the reference convention normalises after upsampling to the image size)."""
    fmap = torch.as_tensor(np.asarray(features)).float().permute(2, 0, 1)
    if resolution:
        fmap = F.interpolate(fmap[None], size=(resolution, resolution), mode="bilinear", align_corners=False)[0]
    return F.normalize(fmap, dim=0) if normalise else fmap


def _axis_weights(n_in: int, n_out: int, device: torch.device) -> Tensor:
    """``[n_out, n_in]`` bilinear weights along one axis, as ``F.interpolate(mode="bilinear", align_corners=False)``
    computes them in float32 (so border rows whose source index rounds just past 0 get the same tiny weight on the
    next cell as in the reference), taken from interpolating one-hot rows; as float64. Pixels past the last cell's
    centre read that cell alone: weight exactly 1, so they tie exactly, as the top / left border pixels do."""
    basis = torch.eye(n_in, dtype=torch.float32, device=device)[None, :, :, None]  # channel c: one-hot at cell c
    weights = F.interpolate(basis, size=(n_out, 1), mode="bilinear", align_corners=False)[0, :, :, 0].T.double()
    alone = (weights != 0).sum(1) == 1
    weights[alone] = (weights[alone] != 0).double()
    return weights


class _PixelMap:
    """A ``[D, gh, gw]`` map as if bilinearly upsampled to its image's ``(w, h)`` (eval_spair.py:94-95), without
    holding the ``D x h x w`` upsampling: interpolation is linear, so a dot product with an upsampled pixel is the
    upsampled map of dot products, and each pixel's squared norm comes from neighbouring cells' products."""

    def __init__(self, fmap: Tensor, size: tuple[int, int]) -> None:
        width, height = size
        self.cells = fmap.double()
        _, gh, gw = self.cells.shape
        self.wy, self.wx = _axis_weights(gh, height, fmap.device), _axis_weights(gw, width, fmap.device)
        across = self.cells @ self.wx.T  # [D, gh, w]: upsampled along x only
        square = (across * across).sum(0)  # [gh, w]
        cross = (across[:, :-1] * across[:, 1:]).sum(0)  # [gh - 1, w]: products of vertical neighbours
        norm2 = (self.wy * self.wy) @ square + 2 * (self.wy[:, :-1] * self.wy[:, 1:]) @ cross
        self.norm = norm2.clamp_min(0).sqrt().clamp_min(1e-12).flatten()  # F.normalize's eps

    def vectors(self, xs: Tensor, ys: Tensor) -> Tensor:
        """``[K, D]`` unit features of the upsampled map at pixels ``(xs, ys)``."""
        vectors = torch.einsum("ki,kj,dij->kd", self.wy[ys], self.wx[xs], self.cells)
        return F.normalize(vectors, dim=1)

    def cosines(self, vectors: Tensor) -> Tensor:
        """``[K, h * w]`` cosine of unit ``vectors`` with every pixel of the upsampled map."""
        dots = torch.einsum("kd,dij->kij", vectors, self.cells)
        return (self.wy @ dots @ self.wx.T).flatten(1) / self.norm


def _soft_argmax(sims: Tensor, by: Tensor, bx: Tensor, gh: int, gw: int, window: int,
                 temperature: float) -> tuple[Tensor, Tensor]:
    """Softmax(sim / temperature)-weighted mean (row, column) over the cells within ``window`` of the best one."""
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=sims.dtype, device=sims.device),
                            torch.arange(gw, dtype=sims.dtype, device=sims.device), indexing="ij")
    inside = ((ys.flatten()[None] - by[:, None]).abs() <= window) & ((xs.flatten()[None] - bx[:, None]).abs() <= window)
    weights = torch.softmax((sims / temperature).masked_fill(~inside, -torch.inf), dim=1)
    return weights @ ys.flatten(), weights @ xs.flatten()


def _reference_match(source: Tensor, target: Tensor, keypoints: np.ndarray, source_size: tuple[int, int],
                     target_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """(best target pixel ``[K]``, cosines ``[K, h*w]``, mutual ``[K]``) as eval_spair.py:94-119 on raw maps: the
    source feature at the keypoint's pixel, the target pixel of highest cosine (float64; ties to the first)."""
    sw, sh = source_size
    pixels = torch.as_tensor(np.floor(np.asarray(keypoints, dtype=np.float64) + 0.5), device=source.device).long()
    xs, ys = pixels[:, 0].clamp(0, sw - 1), pixels[:, 1].clamp(0, sh - 1)  # whole-pixel keypoints stay as they are
    src, trg = _PixelMap(source, source_size), _PixelMap(target, target_size)
    sims = trg.cosines(src.vectors(xs, ys))
    best = sims.argmax(dim=1)
    # mutual: the best source pixel of the matched target pixel is the keypoint's own
    back = src.cosines(trg.vectors(best % target_size[0], best // target_size[0])).argmax(dim=1)
    return best, sims, back == ys * sw + xs


def match_keypoints(source: Tensor, target: Tensor, keypoints: np.ndarray, source_size: tuple[int, int],
                    target_size: tuple[int, int], refine: str = "none", window: int = 3,
                    temperature: float = 0.04, convention: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """Predicted target points ``[K, 2]`` (x, y pixels) of source ``keypoints`` and whether each is a mutual match.

    ``source`` / ``target``: ``[D, H, W]`` maps (``convention="reference"``: raw, upsampled here to the images'
    sizes; ``"cell_centre"``: L2-normalised, matched on their own grid); sizes are the original images'
    ``(width, height)``."""
    if convention == "reference":
        best, sims, mutual = _reference_match(source, target, keypoints, source_size, target_size)
        gw, gh = target_size  # the grid is the target's pixels
    else:
        _, gh, gw = target.shape
        _, sgh, sgw = source.shape
        sw, sh = source_size
        points = torch.as_tensor(keypoints, dtype=torch.float32, device=source.device)
        own = (points[:, 1] / sh * sgh).long().clamp(0, sgh - 1) * sgw \
            + (points[:, 0] / sw * sgw).long().clamp(0, sgw - 1)
        sims = source.flatten(1)[:, own].T @ target.flatten(1)  # [K, gh * gw]: the keypoint's cell vs every cell
        best = sims.argmax(dim=1)
        # mutual: the best source cell of the matched target cell is the keypoint's own source cell
        mutual = (target.flatten(1)[:, best].T @ source.flatten(1)).argmax(dim=1) == own
    by, bx = (best // gw).float(), (best % gw).float()
    if refine == "soft_argmax":
        by, bx = _soft_argmax(sims, by, bx, gh, gw, window, temperature)
    if convention == "reference":
        predicted = torch.stack([bx, by], dim=1)  # the pixel index itself, no half-pixel offset (line 121)
    else:
        tw, th = target_size
        predicted = torch.stack([(bx + 0.5) / gw * tw, (by + 0.5) / gh * th], dim=1)  # cell centres
    return predicted.cpu().numpy().astype(np.float64), mutual.cpu().numpy()


class CorrespondenceProtocol(Protocol):
    """Match every pair of the ``test`` split; PCK@alpha per pair, per keypoint and per category."""

    name = "correspondence"
    version = "2"  # 2: the reference keypoint convention (DIFT's eval_spair.py) by default
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
        if cfg.resolution is not None and cfg.keypoint_convention == "reference":
            raise ConfigError("correspondence: protocol.resolution applies to keypoint_convention='cell_centre'; the "
                              "reference convention upsamples every map to its image's own size (drop resolution, "
                              "or set protocol.keypoint_convention=cell_centre)")
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
        cell_centre = cfg.keypoint_convention == "cell_centre"

        def fmap(index: int) -> Tensor:
            if index not in maps:
                maps[index] = feature_map(features[index], cfg.resolution, normalise=cell_centre)
            return maps[index]

        per_pair, per_category = defaultdict(list), defaultdict(lambda: defaultdict(list))
        errors_norm, errors_px, mutual = [], [], []
        for pair in tqdm(pairs, desc="correspondence pairs", unit="pair", leave=False):
            src_size, trg_size = dataset.sizes[pair.source], dataset.sizes[pair.target]
            predicted, is_mutual = match_keypoints(fmap(pair.source).to(ctx.device), fmap(pair.target).to(ctx.device),
                                                   pair.source_keypoints, src_size, trg_size, cfg.refine,
                                                   cfg.soft_window, cfg.soft_temperature, cfg.keypoint_convention)
            error = np.linalg.norm(predicted - pair.target_keypoints, axis=1)
            normalised = error / pck_threshold(pair.target_bbox, trg_size)
            for alpha in cfg.alphas:
                value = correct_fraction(normalised, alpha)  # averaged, then x 100, as eval_spair.py:127-132
                per_pair[alpha].append(value)
                per_category[pair.category][alpha].append(value)
            errors_norm.append(normalised)
            errors_px.append(error)
            mutual.append(is_mutual)
        all_norm, all_px = np.concatenate(errors_norm), np.concatenate(errors_px)
        metrics: dict[str, float] = {}
        for alpha in cfg.alphas:
            metrics[f"PCK@{alpha:g}"] = float(np.mean(per_pair[alpha])) * 100
            metrics[f"PCK@{alpha:g}_keypoints"] = pck(all_norm, alpha)
        for t in cfg.pixel_thresholds:
            metrics[f"recall@{t:g}px"] = 100.0 * float((all_px <= t).mean())
        metrics["mutual_rate"] = 100.0 * float(np.concatenate(mutual).mean())
        rows = [{"category": name, "pairs": len(values[cfg.alphas[0]]),
                 **{f"PCK@{a:g}": float(np.mean(values[a])) * 100 for a in cfg.alphas}}
                for name, values in sorted(per_category.items())]
        return ProtocolResult(metrics, cfg.main_metric, higher_is_better=True, tables={"per_category": rows})

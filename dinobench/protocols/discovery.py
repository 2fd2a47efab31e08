"""Unsupervised single-object discovery on frozen patch features: TokenCut and LOST, scored by CorLoc.

Both work on the patch-affinity graph of one image's last-block patch features ``F`` (``[N, D]``, L2-normalised:
``A = F F^T``); the backbone's features stand in for the last layer's attention keys the papers use (the
backbone contract exposes features for every family; ConvNeXt has no keys).

- TokenCut (Wang et al. 2022): ``W = 1`` where ``A > tau`` (0.2) else ``eps`` (1e-5); the second smallest
  generalised eigenvector of ``(D - W) x = lambda D x`` (scipy ``eigh``) is split at its mean; the side holding
  the entry of largest magnitude is the foreground; box of the connected component (4-neighbour) holding it.
- LOST (Simeoni et al. 2021): degree of a patch = number of patches with positive affinity; the seed is the
  patch of least degree; among the ``k_patches`` (100) least-degree patches, those positively correlated with
  the seed are summed (``sum of their rows of A``); box of the connected component of positive sum holding
  the seed.

The box (patch cells scaled to the original image, clipped to it) is correct when its IoU with any ground-truth
box is at least 0.5, the IoU being LOST's / TokenCut's own (``dinobench.metrics.discovery``: eps terms, so an
exact 0.5 between these float boxes is a miss); CorLoc is the share of correct images (%). Both methods run;
``method`` names the main metric's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ImageDraw
from scipy import ndimage
from scipy.linalg import eigh
from tqdm.auto import tqdm

from dinobench.context import RunContext
from dinobench.errors import ConfigError, DataError
from dinobench.metrics.discovery import corloc
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.visualize import side_by_side


@dataclass
class DiscoveryConfig:
    """The papers' defaults."""

    method: Literal["tokencut", "lost"] = "tokencut"
    tau: float = 0.2  # TokenCut affinity threshold
    eps: float = 1e-5  # TokenCut weight of the other edges
    k_patches: int = 100  # LOST: least-degree patches considered for the expansion
    num_visualizations: int = 4


def component_box(mask: np.ndarray, seed: int) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` in patch cells of the 4-connected component of boolean ``mask`` ``[h, w]`` holding
    flat index ``seed`` (the seed cell alone when it is not in the mask)."""
    labels, _ = ndimage.label(mask)
    y, x = np.unravel_index(seed, mask.shape)
    if labels[y, x] == 0:
        return int(x), int(y), int(x) + 1, int(y) + 1
    ys, xs = np.nonzero(labels == labels[y, x])
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def tokencut(features: np.ndarray, tau: float = 0.2, eps: float = 1e-5) -> tuple[np.ndarray, int]:
    """(foreground mask ``[h, w]``, seed index) of patch features ``[h, w, D]`` by normalised cut."""
    h, w, dim = features.shape
    flat = F.normalize(torch.as_tensor(features, dtype=torch.float64).reshape(-1, dim), dim=1).numpy()
    weights = np.where(flat @ flat.T > tau, 1.0, eps)
    degree = np.diag(weights.sum(axis=1))
    _, vectors = eigh(degree - weights, degree, subset_by_index=[1, 1])
    second = vectors[:, 0]
    partition = second > second.mean()
    seed = int(np.argmax(np.abs(second)))
    if not partition[seed]:
        partition = ~partition
    return partition.reshape(h, w), seed


def lost(features: np.ndarray, k_patches: int = 100) -> tuple[np.ndarray, int]:
    """(positive-correlation mask ``[h, w]``, seed index) of patch features ``[h, w, D]`` (LOST)."""
    h, w, dim = features.shape
    flat = torch.as_tensor(features, dtype=torch.float64).reshape(-1, dim)
    affinity = (flat @ flat.T).numpy()
    degree = (affinity > 0).sum(axis=1)
    order = np.argsort(degree, kind="stable")
    seed = int(order[0])
    potentials = order[:k_patches]
    similar = potentials[affinity[seed, potentials] > 0]
    return (affinity[similar].sum(axis=0) > 0).reshape(h, w), seed


def to_pixels(cells: tuple[int, int, int, int], grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A box in patch cells of a ``grid`` ``(h, w)`` -> original pixels of an image of ``size`` ``(width, height)``."""
    (x1, y1, x2, y2), (gh, gw), (width, height) = cells, grid, size
    sx, sy = width / gw, height / gh
    return np.array([x1 * sx, y1 * sy, min(x2 * sx, width), min(y2 * sy, height)], dtype=np.float64)


class DiscoveryProtocol(Protocol):
    """TokenCut and LOST boxes for every image of ``trainval``; CorLoc."""

    name = "discovery"
    version = "2"  # 2: CorLoc with the reference bbox_iou (eps terms) instead of torchvision's exact IoU
    Config = DiscoveryConfig
    runtime_keys = ("num_visualizations",)
    datasets = ("trainval",)

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if not -1 < cfg.tau < 1 or cfg.eps <= 0 or cfg.k_patches < 1:
            raise ConfigError("discovery: protocol.tau in (-1, 1), eps > 0 and k_patches >= 1 are needed")

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Boxes by both methods, CorLoc of each; the configured method's is the main metric."""
        dataset = ctx.dataset("trainval")
        if not hasattr(dataset, "boxes"):
            raise DataError(f"task {ctx.task!r}: the dataset has no ground-truth boxes; use voc07, voc12 or coco20k")
        features = ctx.features("trainval", "patch_tokens").features
        boxes = {"tokencut": [], "lost": []}
        for i in tqdm(range(len(dataset)), desc="object discovery", unit="img", leave=False):
            patches = np.asarray(features[i], dtype=np.float64)
            grid = patches.shape[:2]
            for name, (mask, seed) in (("tokencut", tokencut(patches, self.config.tau, self.config.eps)),
                                       ("lost", lost(patches, self.config.k_patches))):
                boxes[name].append(to_pixels(component_box(mask, seed), grid, dataset.sizes[i]))
        metrics, hits = {}, {}
        for name, predicted in boxes.items():
            metrics[f"CorLoc_{name}"], hits[name] = corloc(predicted, dataset.boxes)
        metrics["CorLoc"] = metrics[f"CorLoc_{self.config.method}"]
        if ctx.predictions_dir is not None:
            self.draw(ctx.predictions_dir, dataset, boxes)
        rows = [{"image": Path(dataset.images[i]).name, **{f"hit_{n}": bool(hits[n][i]) for n in boxes}}
                for i in range(min(len(dataset), 1000))]
        return ProtocolResult(metrics, "CorLoc", higher_is_better=True, tables={"per_image": rows})

    def draw(self, out_dir: Path, dataset: object, boxes: dict[str, list[np.ndarray]]) -> None:
        """The image with its true boxes (white), TokenCut's (red) and LOST's (blue) box."""
        for i in range(min(self.config.num_visualizations, len(boxes["lost"]))):
            image = dataset.image(i).copy()  # type: ignore[attr-defined]
            draw = ImageDraw.Draw(image)
            for box in dataset.boxes[i]:  # type: ignore[attr-defined]
                draw.rectangle(box.tolist(), outline=(255, 255, 255), width=2)
            for name, colour in (("tokencut", (230, 30, 30)), ("lost", (30, 80, 230))):
                draw.rectangle(boxes[name][i].tolist(), outline=colour, width=2)
            side_by_side([("truth (white), TokenCut (red), LOST (blue)", image)], Path(out_dir) / f"discovery_{i:03d}.png")

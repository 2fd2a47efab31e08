"""PCA maps of a backbone's patch features for any images: what ``--save-predictions`` adds to every task whose
data are images, and what ``dinobench visualize`` writes for a user's own images.

An image is resized (shorter side ``size``, aspect kept, both sides cut to whole patches), normalised with
the backbone's statistics, and its last-block normalised patch tokens are mapped to RGB with one whitened
3-component PCA fitted on the patches of all images of the call together (so a colour means the same
feature direction in every figure) - the paper's rainbow figures (:func:`dinobench.visualize.pca_map`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from dinobench.backbones.contract import backbone_normalisation
from dinobench.data.base import ClassificationDataset, load_rgb
from dinobench.data.folder import IMAGE_EXTENSIONS
from dinobench.features.kinds import patch_tokens
from dinobench.visualize import fit_pca, pca_map, side_by_side

DEFAULT_SIZE = 448


def preview_image(dataset: Any, index: int) -> Image.Image | None:
    """The original RGB image of item ``index`` of ``dataset``, or None when its items are not images."""
    if callable(getattr(dataset, "image", None)):
        return dataset.image(index)
    samples = getattr(dataset, "samples", None)
    if not samples:
        return None
    source = samples[index][0] if isinstance(samples[index], (tuple, list)) else samples[index]
    if isinstance(dataset, ClassificationDataset):
        return dataset.load(source)
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        return load_rgb(source)
    return None


def figure_size(transform_cfg: dict[str, Any] | None) -> int:
    """The image size a task's ``transform`` section works at (crop, size, resize, max_size), else 448."""
    cfg = transform_cfg or {}
    for key in ("crop", "size", "resize", "max_size"):
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_SIZE


def prepare(image: Image.Image, size: int, patch_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[3, H, W]``: shorter side ``size``, both sides cut down to whole patches (centred), normalised."""
    width, height = image.size
    scale = size / min(width, height)
    resized = TF.resize(image, [max(patch_size, round(height * scale)), max(patch_size, round(width * scale))],
                        antialias=True)
    h = max(patch_size, resized.height // patch_size * patch_size)
    w = max(patch_size, resized.width // patch_size * patch_size)
    return TF.normalize(TF.to_tensor(TF.center_crop(resized, [h, w])), list(mean), list(std))


@torch.inference_mode()
def pca_maps(model: torch.nn.Module, images: Sequence[Image.Image], *, size: int = DEFAULT_SIZE,
             device: str = "cpu") -> list[Image.Image]:
    """One PCA map (one pixel per patch) per image, from a PCA fitted on all their patches."""
    mean, std = backbone_normalisation(model)
    model.eval().to(device)
    tokens = [patch_tokens(model, prepare(img, size, int(model.patch_size), mean, std)[None].to(device))[0]
              .float().cpu().numpy() for img in images]
    pca = fit_pca(np.concatenate([t.reshape(-1, t.shape[-1]) for t in tokens]))
    return [pca_map(t, pca=pca) for t in tokens]


def write_pca_figures(model: torch.nn.Module, images: Sequence[tuple[str, Image.Image]], out_dir: str | Path, *,
                      size: int = DEFAULT_SIZE, device: str = "cpu", prefix: str = "pca_") -> list[Path]:
    """``<out_dir>/<prefix><name>.png`` (image | PCA of its patch features) for each ``(name, image)``."""
    maps = pca_maps(model, [img for _, img in images], size=size, device=device)
    out = []
    for (name, image), pca in zip(images, maps):
        height = max(image.height, 16 * pca.height, 128)
        out.append(side_by_side([("image", image), ("PCA of patch features", pca)], Path(out_dir) / f"{prefix}{name}.png",
                                height=min(height, 512)))
    return out


def dataset_pca_figures(model: torch.nn.Module, datasets: dict[str, Any], out_dir: str | Path, *,
                        transform_cfg: dict[str, Any] | None, count: int = 4, device: str = "cpu") -> list[str]:
    """PCA figures of the first ``count`` images of the task's val split (else its first split with images);
    names relative to ``out_dir``; [] when the task's items are not images."""
    order = sorted(datasets, key=lambda name: (name != "val", name))
    for split in order:
        dataset = datasets[split]
        try:
            images = [(f"{split}_{i:03d}", preview_image(dataset, i)) for i in range(min(count, len(dataset)))]
        except (TypeError, IndexError, AttributeError):
            continue
        if images and all(img is not None for _, img in images):
            paths = write_pca_figures(model, images, out_dir, size=figure_size(transform_cfg), device=device)  # type: ignore[arg-type]
            return [p.name for p in paths]
    return []

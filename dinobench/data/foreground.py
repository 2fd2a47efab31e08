"""Foreground masks: ``<root>/{train,val}/images/*`` + ``<root>/{train,val}/masks/<stem>.png``.

A mask is read as a foreground fraction in [0, 1]: the alpha channel of an RGBA/LA PNG (the official
notebook's labels), else the grey value / 255 (0 = background, 255 = foreground; soft values allowed).
The eval transform (:meth:`ForegroundDataset.eval_transform`, set by the runner from ``transform.size``)
resizes image and mask to ``size x size`` (rounded down to whole patches) and pools the mask over each
patch, as the notebook's ``patch_quant_filter`` does: the target of an image is its ``[h, w]`` grid of
foreground fractions, next to its ``[h, w, D]`` patch features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from dinobench.data.base import cache_fingerprint_of, check_pixels, fingerprint_of, load_rgb
from dinobench.data.layout import file_listing, first_samples, images_in, pair_by_stem, require_dir, root_folder
from dinobench.data.transforms import required_pixels
from dinobench.errors import DataError
from dinobench.typed_config import reader_options

EXPECTED = "DIR/{train,val}/images/*.{jpg,png} + DIR/{train,val}/masks/<same stem>.png (255 = foreground)"


def load_foreground(path: str | Path) -> Image.Image:
    """The foreground fraction of a mask file as an 8-bit ``L`` image (alpha channel when there is one)."""
    try:
        with Image.open(path) as img:
            check_pixels(path, *img.size, "mask")
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                return img.convert("RGBA").getchannel("A")
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise DataError(f"{path}: {img.mode} mask; save foreground masks as 8-bit PNG (0 = background, "
                                f"255 = foreground)")
            return img.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read mask ({type(exc).__name__}: {exc}); fix or remove the file") from exc


class ForegroundTransform:
    """(PIL image, PIL mask) -> (normalised image [3, S, S], foreground fraction per patch [S/p, S/p])."""

    def __init__(self, size: int, patch_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.patch_size = int(patch_size)
        self.size = max(self.patch_size, int(size) // self.patch_size * self.patch_size)
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        size = [self.size, self.size]
        pixels = TF.normalize(TF.to_tensor(TF.resize(image, size, antialias=True)), self.mean, self.std)
        fraction = TF.to_tensor(TF.resize(mask, size, antialias=True))  # [1, S, S] in [0, 1]
        return pixels, F.avg_pool2d(fraction[None], self.patch_size)[0, 0]

    def __repr__(self) -> str:
        return f"ForegroundTransform(size={self.size}, patch_size={self.patch_size})"


class ForegroundDataset(Dataset):
    """``(image, mask)`` file pairs; items ``(image tensor, [h, w] foreground fractions)`` once the transform is set."""

    def __init__(self, name: str, split: str, samples: Sequence[tuple[str, str]], fingerprint: str) -> None:
        self.name, self.split, self.samples, self.fingerprint = name, split, list(samples), fingerprint
        self.transform: Callable | None = None

    def eval_transform(self, transform_cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float],
                       backbone: Any) -> ForegroundTransform:
        """The transform of ``transform.size`` (pixels, square) at the backbone's patch size."""
        size = required_pixels(transform_cfg, "size", "the square input side", 448)
        return ForegroundTransform(size, int(backbone.patch_size), mean, std)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image_path, mask_path = self.samples[index]
        image, mask = load_rgb(image_path), load_foreground(mask_path)
        if self.transform is None:
            return image, mask
        return self.transform(image, mask)

    def image(self, index: int) -> Image.Image:
        """The original RGB image of sample ``index`` (figures)."""
        return load_rgb(self.samples[index][0])

    def describe(self) -> dict[str, Any]:
        """What the record stores about this split."""
        return {"split": self.split, "size": len(self), "fingerprint": self.fingerprint}


@dataclass
class ForegroundFolderOptions:
    """``dataset=dict(type="foreground_folder", ...)``: ``<root>/<split>/{images,masks}``."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train"  # folder names of the two splits under the root
    val_split: str = "val"
    max_train_samples: int | None = None  # only the first N pairs (sorted) of the split; None = all
    max_val_samples: int | None = None


def build_foreground_folder(cfg: dict[str, Any], data_root: str | None) -> dict[str, ForegroundDataset]:
    """``train`` and ``val`` splits of ``<root>/{train,val}/{images,masks}``."""
    cfg = reader_options(ForegroundFolderOptions, cfg)
    root = root_folder(cfg, data_root, "foreground_folder", EXPECTED)
    splits = {}
    for split_key in ("train", "val"):
        split_dir = root / cfg[f"{split_key}_split"]
        images = images_in(require_dir(split_dir / "images", f"{split_dir}/images/*.jpg ({EXPECTED})"))
        mask_dir = require_dir(split_dir / "masks", f"{split_dir}/masks/<stem>.png ({EXPECTED})")
        pairs = first_samples(pair_by_stem(images, mask_dir, ".png", "mask"), cfg, split_key)
        listing = file_listing(pairs, root)
        ds = ForegroundDataset("foreground_folder", split_key, pairs, fingerprint_of({"files": listing}))
        ds.cache_fingerprint = cache_fingerprint_of(ds.fingerprint, [p for pair in pairs for p in pair])
        splits[split_key] = ds
    if len(splits["train"]) < 2:
        raise DataError(f"{root}: the foreground protocol needs at least 2 train images (C is chosen on held-out "
                        f"train images)")
    return splits


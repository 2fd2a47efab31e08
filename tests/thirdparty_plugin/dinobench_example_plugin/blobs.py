"""An example dataset family from outside dinobench: images with one coloured blob and its foreground mask.

- reader ``example_blobs`` with typed options (:class:`BlobsOptions`) and its own transform section
  (:class:`BlobsTransformConfig`): ``root/{train,val}/images/<n>.png`` + ``root/{train,val}/masks/<n>.png``;
- a joint transform (``JointTransform``: torchvision v2 over ``tv_tensors``, the mask moves with the image);
- a synthetic writer in that layout (``python -m dinobench.synthetic example_blobs DIR``).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from dinobench.api import DataError, JointTransform, reader_options


@dataclass
class BlobsOptions:
    """The ``dataset`` section of ``example_blobs``."""

    root: str | None = None
    max_samples: int | None = None  # the first N of each split


@dataclass
class BlobsTransformConfig:
    """The ``transform`` section of ``example_blobs`` tasks."""

    size: int = 64
    flip_prob: float = 0.5  # training only


class BlobMasks:
    """One split: items ``{"image": float [3, S, S], "mask": long [S, S], "name"}`` after the transform."""

    def __init__(self, images, masks, split):
        self.images, self.masks, self.split, self.transform = images, masks, split, None
        digest = hashlib.sha256()
        for path in images + masks:
            digest.update(Path(path).read_bytes())
        self.fingerprint = digest.hexdigest()[:16]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = torch.from_numpy(np.array(Image.open(self.images[index]).convert("RGB"))).permute(2, 0, 1)
        mask = torch.from_numpy((np.array(Image.open(self.masks[index])) > 127).astype(np.int64))
        sample = {"image": image, "mask": mask, "name": Path(self.images[index]).stem}
        return self.transform(sample) if self.transform is not None else sample

    def describe(self):
        return {"size": len(self), "split": self.split}


def build_blobs(cfg, data_root):
    """``{"train", "val"}`` splits, the layout checked first."""
    cfg = reader_options(BlobsOptions, cfg)
    root = Path(data_root or cfg["root"] or "")
    splits = {}
    for split in ("train", "val"):
        images = sorted((root / split / "images").glob("*.png"))
        if not images:
            raise DataError(f"{root / split / 'images'}: no PNG images; pass --data-root (python -m "
                            f"dinobench.synthetic example_blobs DIR writes one)")
        masks = [root / split / "masks" / p.name for p in images]
        missing = [m for m in masks if not m.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: mask missing for {images[masks.index(missing[0])]}")
        limit = cfg["max_samples"]
        splits[split] = BlobMasks([str(p) for p in images[:limit]], [str(m) for m in masks[:limit]], split)
    return splits


def blob_transforms(transform_cfg, mean, std):
    """(train, eval) joint transforms of the task's ``transform`` section: dinobench's joint system wraps the sample's
    image and mask as ``tv_tensors`` so that every v2 step moves the mask with the image."""
    cfg = reader_options(BlobsTransformConfig, transform_cfg, "transform", drop=())
    size = [cfg["size"], cfg["size"]]
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    train = JointTransform([v2.Resize(size), v2.RandomHorizontalFlip(cfg["flip_prob"]), *tail])
    return train, JointTransform([v2.Resize(size), *tail])


def write_blobs(out_dir, n_train=16, n_val=8, size=64, seed=0):
    """A grey noisy background with one red blob (ellipse) per image; byte-identical for the same arguments."""
    h, w = (size, size) if isinstance(size, int) else size
    root = Path(out_dir)
    for split_id, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, split_id, i])
            yy, xx = np.mgrid[0:h, 0:w]
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            image = rng.normal(0.5, 0.08, (h, w, 3))
            image[mask] = [0.85, 0.15, 0.1] + rng.normal(0, 0.05, (int(mask.sum()), 3))
            Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(root / split / "images" / f"{i:04d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / split / "masks" / f"{i:04d}.png")
    return root

"""scikit-learn's bundled real handwritten digits (1,797 8x8 images, 10 classes), seeded split.

Needs no download: the default dataset for tests and the demo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dinobench.data.base import ClassificationDataset, fingerprint_of
from dinobench.typed_config import reader_options


@dataclass
class DigitsOptions:
    """``dataset=dict(type="digits", ...)``: the seeded per-class train/val split of the bundled images."""

    val_fraction: float = 0.2  # share of each class that goes to val
    split_seed: int = 0


class DigitsDataset(ClassificationDataset):
    """Samples are indices into the 8x8 image array (values 0..16)."""

    def __init__(self, images: np.ndarray, split: str, indices: np.ndarray, targets: np.ndarray, fingerprint: str):
        samples = [(int(i), int(targets[i])) for i in indices]
        super().__init__("digits", split, samples, [str(c) for c in range(10)], fingerprint)
        self.images = images

    def load(self, source: int) -> Image.Image:  # noqa: D102
        pixels = (self.images[source] * (255.0 / 16.0)).round().astype(np.uint8)
        return Image.fromarray(pixels, mode="L").convert("RGB")


def stratified_split(targets: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split: ``round(val_fraction * n_c)`` samples of each class go to val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == cls))
        n_val = int(round(val_fraction * len(idx)))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def build_digits(cfg: dict[str, Any], data_root: str | None = None) -> dict[str, ClassificationDataset]:
    """Train/val splits of ``sklearn.datasets.load_digits`` (``data_root`` is not used)."""
    cfg = reader_options(DigitsOptions, cfg)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, targets = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    val_fraction, seed = float(cfg["val_fraction"]), cfg["split_seed"]
    train_idx, val_idx = stratified_split(targets, val_fraction, seed)
    content_sha = hashlib.sha256(images.tobytes() + targets.tobytes()).hexdigest()
    content = fingerprint_of({"sha": content_sha, "val_fraction": val_fraction, "split_seed": seed})
    return {
        "train": DigitsDataset(images, "train", train_idx, targets, content),
        "val": DigitsDataset(images, "val", val_idx, targets, content),
    }

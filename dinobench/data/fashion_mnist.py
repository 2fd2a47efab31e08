"""Fashion-MNIST (Zalando): 60,000 train + 10,000 test 28x28 grey images of 10 clothing classes.

Read from the four standard idx files (``*-ubyte.gz``, or uncompressed) found in ``--data-root`` /
``dataset.root`` or, by default, where the Debian package ``dataset-fashion-mnist`` installs them.
Splits: ``train`` = the 60k training set, ``val`` = the official 10k test set. ``train_subset`` /
``val_subset`` take a seeded, class-stratified subset (CPU-sized runs).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dinobench.data.base import ClassificationDataset, fingerprint_of
from dinobench.errors import ConfigError, DataError
from dinobench.typed_config import reader_options

#: where ``apt-get install dataset-fashion-mnist`` puts the files (``dpkg -L dataset-fashion-mnist``)
DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
#: idx magic numbers: 0x0000 (two zero bytes), 0x08 (unsigned byte data), then the number of dimensions
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


@dataclass
class FashionMNISTOptions:
    """``dataset=dict(type="fashion_mnist", ...)``: where the idx files are and optional seeded subsets."""

    root: str | None = None  # None: --data-root, else DEBIAN_ROOT
    train_subset: int | None = None  # class-stratified subset size; None = the full split
    val_subset: int | None = None
    subset_seed: int = 0


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """An idx file (gzip or plain) as a uint8 array; wrong magic, shape or length raises :class:`DataError`."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc}); "
                        f"re-download or reinstall the file") from None
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else "a truncated header"
        raise DataError(f"{path}: not an idx file of the expected kind (magic {found}, expected 0x{magic:08x}); "
                        f"pass the original Fashion-MNIST files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header; re-download the file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: {len(raw) - header} data bytes, header says {shape} "
                        f"({int(np.prod(shape))} bytes); the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root}: {stem}.gz not found; install the Debian package dataset-fashion-mnist or pass "
                    f"--data-root DIR with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                    f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the (compressed) bytes, memoised per (path, size, mtime) within a process."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_subset_size(size: Any, key: str) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"dataset.{key} must be a positive integer or null (full split), got {size!r}")


def stratified_subset(labels: np.ndarray, size: int | None, seed: int, key: str) -> np.ndarray:
    """Sorted indices of a seeded class-stratified subset of ``size`` samples (all when None or >= N)."""
    _check_subset_size(size, key)
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    n_classes = len(np.unique(labels))
    if size < n_classes:
        raise ConfigError(f"dataset.{key}={size}: a stratified subset needs at least one sample per class "
                          f"({n_classes}); use {n_classes} or more, or null for the full split")
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed)
    return np.sort(chosen)


class FashionMNISTDataset(ClassificationDataset):
    """Samples are indices into the ``[N, 28, 28]`` uint8 image array of the split."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, split: str, indices: np.ndarray, fingerprint: str):
        super().__init__("fashion_mnist", split, [(int(i), int(labels[i])) for i in indices], CLASSES, fingerprint)
        self.images = images

    def load(self, source: int) -> Image.Image:  # noqa: D102
        return Image.fromarray(self.images[source], mode="L").convert("RGB")


def build_fashion_mnist(cfg: dict[str, Any], data_root: str | None = None) -> dict[str, ClassificationDataset]:
    """Train (60k) and val (official 10k test) splits, optionally subsetted per ``train_subset``/``val_subset``."""
    for key in ("train_subset", "val_subset"):  # their own message (which names null) before the generic type check
        _check_subset_size(dict(cfg or {}).get(key), key)
    cfg = reader_options(FashionMNISTOptions, cfg)
    root = Path(data_root or cfg["root"] or DEBIAN_ROOT).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: Fashion-MNIST folder not found; install the Debian package dataset-fashion-mnist "
                        f"(apt-get install dataset-fashion-mnist) or pass --data-root DIR with "
                        f"train-images-idx3-ubyte.gz and the three other idx files")
    paths = {split: tuple(_find(root, stem) for stem in stems) for split, stems in FILES.items()}
    seed = cfg["subset_seed"]
    splits: dict[str, ClassificationDataset] = {}
    for split, (images_path, labels_path) in paths.items():
        images, labels = read_idx(images_path, IMAGES_MAGIC), read_idx(labels_path, LABELS_MAGIC)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{images_path}: {images.shape} images vs {labels.shape} labels in {labels_path.name}; "
                            f"the two files of a split must match")
        if labels.size and int(labels.max()) >= len(CLASSES):
            raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}")
        key = f"{split}_subset"
        subset = cfg[key]
        indices = stratified_subset(labels, subset, seed, key)
        content = [_file_sha256(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (images_path, labels_path)]
        fingerprint = fingerprint_of({"files": content, "subset": subset,
                                      "subset_seed": seed if subset is not None else None, "size": len(indices)})
        splits[split] = FashionMNISTDataset(images, labels.astype(np.int64), split, indices, fingerprint)
    return splits

"""ImageNet-style folders: ``root/<split>/<class>/<image>`` (ImageNet-1k, generic ImageFolder).

The whole layout is validated before any compute: missing root or split, empty class folder,
classes that differ between splits -- each a one-line :class:`DataError`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinobench.data.base import ClassificationDataset, fingerprint_of
from dinobench.errors import DataError
from dinobench.typed_config import reader_options

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class FolderOptions:
    """``dataset=dict(type="folder" | "imagenet", ...)``: ``<root>/<train_split>/<class>/<images>`` and the same
    for ``val_split``."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train"  # folder names of the two splits under the root
    val_split: str = "val"


def _scan_split(split_dir: Path) -> tuple[list[str], list[tuple[str, int]], list[Any]]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir}: no class folders; expected {split_dir}/<class>/<image files>")
    samples, listing = [], []
    ignored: Counter[str] = Counter()  # suffix -> files that are not images (reported, never silent)
    for label, cls in enumerate(classes):
        entries = [p for p in (split_dir / cls).iterdir() if p.is_file() and not p.name.startswith(".")]
        ignored.update(p.suffix.lower() or "(no suffix)" for p in entries if p.suffix.lower() not in IMAGE_EXTENSIONS)
        files = sorted(p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"{split_dir / cls}: class folder has no images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder")
        for path in files:
            samples.append((str(path), label))
            stat = path.stat()
            listing.append((f"{cls}/{path.name}", stat.st_size, stat.st_mtime_ns))
    if ignored:
        kinds = ", ".join(f"{suffix}: {n}" for suffix, n in sorted(ignored.items()))
        logging.getLogger("dinobench").warning("dinobench: warning: %s: ignored %d files that are not images (%s)",
                                               split_dir, ignored.total(), kinds)
    return classes, samples, listing


def build_folder_splits(cfg: dict[str, Any], data_root: str | None, name: str = "folder") -> dict[str, ClassificationDataset]:
    """Read ``train`` and ``val`` splits (names configurable) under ``data_root``."""
    cfg = reader_options(FolderOptions, cfg)
    root = data_root or cfg["root"]
    if not root:
        raise DataError(f"dataset {name!r} needs a data root; pass --data-root DIR "
                        f"(DIR/{cfg['train_split']}/<class>/*.jpg)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist; pass --data-root pointing at the dataset folder")
    splits: dict[str, ClassificationDataset] = {}
    scanned = {}
    for split_key in ("train", "val"):
        split_name = cfg[f"{split_key}_split"]
        split_dir = root / split_name
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: split folder missing; expected {root}/{split_name}/<class>/<images>")
        scanned[split_key] = _scan_split(split_dir)
    train_classes, val_classes = scanned["train"][0], scanned["val"][0]
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))[:3]
        only_val = sorted(set(val_classes) - set(train_classes))[:3]
        raise DataError(f"{root}: train and val classes differ (only in train: {only_train}, only in val: "
                        f"{only_val}); every class needs a folder in both splits")
    labels_file = root / "labels.txt"
    display = _read_labels_txt(labels_file, train_classes) if labels_file.is_file() else train_classes
    for split_key, (classes, samples, listing) in scanned.items():
        # the fingerprint (-> protocol hash) is machine independent: names and sizes; the feature-cache
        # key also sees modification times, so an image replaced in place is never served stale
        ds = ClassificationDataset(name, split_key, samples, display,
                                   fingerprint_of({"classes": classes, "files": [f[:2] for f in listing]}))
        ds.cache_fingerprint = fingerprint_of({"fingerprint": ds.fingerprint, "mtimes": [f[2] for f in listing]})
        splits[split_key] = ds
    return splits


def _read_labels_txt(path: Path, wnids: list[str]) -> list[str]:
    """Map ImageNet wnids to readable names from ``labels.txt`` (``wnid,name`` per line)."""
    names = {}
    for line in path.read_text().splitlines():
        if line.strip():
            wnid, _, label = line.partition(",")
            names[wnid.strip()] = label.strip() or wnid.strip()
    return [names.get(w, w) for w in wnids]


def build_imagenet(cfg: dict[str, Any], data_root: str | None) -> dict[str, ClassificationDataset]:
    """ImageNet-1k in the official layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*``, ``labels.txt``)."""
    return build_folder_splits(cfg, data_root, name="imagenet")


def build_folder(cfg: dict[str, Any], data_root: str | None) -> dict[str, ClassificationDataset]:
    """Any ImageFolder-style dataset with ``train`` and ``val`` splits."""
    return build_folder_splits(cfg, data_root, name="folder")
